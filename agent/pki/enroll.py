"""First contact: exchange the join token and a CSR for the node's certificate.

The key is generated here and never leaves the node. The hub's TLS certificate must
chain to the CA pinned in the token. An unreachable hub is retried with backoff; a
refusal (used, expired or wrong token) is retried too, slowly, because the operator may
be about to fix it, and it is reported in the log and in `edgectl status` every time.
"""

import asyncio
import logging
import random
from pathlib import Path

from agent.config import AgentConfig
from agent.link.status import HubState, LinkStatus
from agent.pki.credentials import CredentialPaths, NodeCredentials, load, save
from agent.pki.renewal import Renewer
from edgecommon import pki, tokens
from edgecommon.backoff import BackoffPolicy
from edgecommon.enroll_client import request_certificate
from edgecommon.errors import ConfigError, EdgeError, Unreachable

log = logging.getLogger("edge-agent.enroll")


def join_token(config: AgentConfig) -> str:
    """The configured join token, or a ConfigError saying how to provide one."""
    if config.agent.join_token:
        return config.agent.join_token
    if config.agent.join_token_file:
        path = Path(config.agent.join_token_file)
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                [f"[agent].join_token_file {path} cannot be read: {exc.strerror}"]
            ) from None
    raise ConfigError(
        [
            "this node is not enrolled and has no join token: create one with "
            "'edgectl token create --node ID --group G' and set [agent].join_token_file "
            "(or AUTONOMY_AGENT_JOIN_TOKEN)"
        ]
    )


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
            pki.atomic_write(paths.enrolled_with, join.token_id.encode(), 0o600)
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


async def reenroll(
    config: AgentConfig, paths: CredentialPaths, renewer: Renewer, status: LinkStatus
) -> bool:
    """The hub refuses this node's certificate (expired, revoked, retired CA): re-enroll with
    the configured join token if it is one this node has not used yet. The node keeps its
    identity and its state; only its key and certificate change. True when it re-enrolled."""
    try:
        join = tokens.parse_token(join_token(config))
    except ConfigError:
        return False
    except EdgeError as exc:
        status.credential_problem += f" (the configured join token is unusable: {exc})"
        return False
    used = paths.enrolled_with.read_text().strip() if paths.enrolled_with.exists() else ""
    if join.token_id == used:
        return False
    if join.subject != renewer.creds.identity:
        status.credential_problem += (
            f" (the configured join token is for {join.subject}, not this node)"
        )
        return False
    key = pki.generate_key()
    try:
        answer = await request_certificate(
            config.enroll_target, join, key, config.link.rpc_timeout_s
        )
        save(paths, key, answer.certificate_pem, answer.ca_bundle_pem)
    except EdgeError as exc:
        log.warning("re-enrollment with token %s failed: %s", join.token_id, exc)
        status.credential_problem += f" (re-enrollment with token {join.token_id} failed: {exc})"
        return False
    pki.atomic_write(paths.enrolled_with, join.token_id.encode(), 0o600)
    creds = load(paths)
    status.credential_problem = ""
    log.warning(
        "re-enrolled as %s with token %s: certificate %s",
        creds.identity,
        join.token_id,
        pki.serial_hex(creds.cert),
    )
    await renewer.adopt(creds)
    return True
