"""First contact: exchange the join token and a CSR for the node's certificate.

The key is generated here and never leaves the node. The hub's TLS certificate must
chain to the CA pinned in the token. An unreachable hub is retried with backoff; a
refusal (used, expired or wrong token) is retried too, slowly, because the operator may
be about to fix it, and it is reported in the log and in `edgectl status` every time.
"""

import asyncio
import logging
import random

from agent.config import AgentConfig
from agent.credentials import CredentialPaths, NodeCredentials, load, save
from agent.status import HubState, LinkStatus
from edgecommon import pki, tokens
from edgecommon.backoff import BackoffPolicy
from edgecommon.enroll_client import request_certificate
from edgecommon.errors import EdgeError, Unreachable

log = logging.getLogger("edge-agent.enroll")


async def enroll_until_done(
    config: AgentConfig,
    token_text: str,
    paths: CredentialPaths,
    status: LinkStatus,
    rng: random.Random,
) -> NodeCredentials:
    join = tokens.parse_token(token_text)
    key = pki.generate_key()
    policy = BackoffPolicy(config.link.reconnect_initial_s, config.link.reconnect_max_s)
    target = config.enroll_target
    attempt = 0
    while True:
        status.enter(HubState.ENROLLING, status.last_error)
        try:
            answer = await request_certificate(target, join, key, config.link.rpc_timeout_s)
            if pki.pem(join.ca) not in answer.ca_bundle_pem:
                raise EdgeError(
                    "the hub's trust bundle does not contain the CA pinned in the token"
                )
            save(paths, key, answer.certificate_pem, answer.ca_bundle_pem)
            creds = load(paths)
            log.info(
                "enrolled as %s; certificate %s valid until %s",
                creds.identity,
                pki.serial_hex(creds.cert),
                creds.cert.not_valid_after_utc,
            )
            return creds
        except EdgeError as exc:
            delay = policy.delay(attempt, rng)
            what = "hub unreachable" if isinstance(exc, Unreachable) else "enrollment refused"
            message = f"{what}: {exc}"
            log.warning("%s; retrying in %.1fs", message, delay)
            status.enter(HubState.BACKOFF, message, status.clock.wall() + delay)
            attempt += 1
            await asyncio.sleep(delay)
