"""Automatic certificate renewal: a new key each time, over the existing mTLS link.

The schedule is pure (`renewal_window`, `renew_at`, `retry_delay`): renewal starts at a
jittered 60-75 % of the certificate's lifetime so a fleet enrolled together does not
renew together, but never later than `availability_target` before expiry, so a node
that loses the hub just before its renewal still has that long to get it back. A
failed attempt is retried with capped, jittered backoff.

One attempt: generate a key, send a CSR for this node's identity to Certs.Renew on a
channel that uses the current certificate, check the answer (our key, our identity,
signed by a CA in the bundle), store it last-good-safe (agent.pki.credentials.save), then
hand it to the subscribers, which move the hub stream and the lease channel over
without dropping them. The trust bundle is fetched on a cadence; when the hub signs
with a CA other than the one that issued our certificate (a rollover), renewal happens
within `rollover_spread_s`.
"""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

import grpc

from agent.config import AgentConfig
from agent.pki.credentials import (
    CredentialPaths,
    NodeCredentials,
    channel_credentials,
    check_answer,
    load,
    save,
    save_bundle,
)
from edgecommon import grpcopts, pki
from edgecommon.backoff import BackoffPolicy
from edgecommon.boundary import LONG_TEXT, one_line
from edgecommon.cadence import wait_for_event
from edgecommon.clock import Clock, stamp
from edgecommon.errors import CredentialError, EdgeError
from edgecommon.pb import agent_pb2, certs_pb2, certs_pb2_grpc
from edgecommon.rpc import raise_from_rpc
from edgecommon.version import PRODUCT_VERSION

MAX_ERROR_TEXT = LONG_TEXT["RenewRequest.last_error"]
log = logging.getLogger("edge-agent.renewal")
EARLIEST, LATEST, FLOOR = 0.60, 0.75, 0.50


def renewal_window(lifetime_s: float, target_s: float) -> tuple[float, float]:
    """The fractions of the lifetime between which renewal starts: [0.60, 0.75], pulled
    earlier so that at least `target_s` is left, but never before half of the lifetime."""
    if lifetime_s <= 0:
        return FLOOR, FLOOR
    hi = max(FLOOR, min(LATEST, 1.0 - target_s / lifetime_s))
    return min(EARLIEST, hi), hi


def renew_at(not_before: float, not_after: float, target_s: float, rng: random.Random) -> float:
    """When to start renewing a certificate valid from `not_before` to `not_after`."""
    lifetime = not_after - not_before
    lo, hi = renewal_window(lifetime, target_s)
    return not_before + rng.uniform(lo, hi) * max(lifetime, 0.0)


def retry_delay(attempt: int, rng: random.Random, policy: BackoffPolicy, left_s: float) -> float:
    """Delay before renewal retry `attempt` (0-based) with `left_s` until expiry: jittered
    backoff with a floor of a tenth of the ceiling, never past expiry."""
    ceiling = policy.ceiling(attempt)
    delay = rng.uniform(ceiling / 10, ceiling)
    return max(0.0, min(delay, left_s))


class RenewalState(StrEnum):
    SCHEDULED = "scheduled"
    RENEWING = "renewing"
    RETRYING = "retrying"
    EXPIRED = "expired"


@dataclass
class RenewalStatus:
    """Written by the renewer only; read by the local API."""

    state: RenewalState = RenewalState.SCHEDULED
    next_renewal_unix: float = 0.0
    last_renewal_unix: float = 0.0
    last_error: str = ""
    failures: int = 0
    renewals: int = 0

    def message(self, creds: NodeCredentials | None) -> agent_pb2.CertificateState:
        return agent_pb2.CertificateState(
            certificate_pem=creds.cert_pem if creds else b"",
            renewal_state=self.state.value if creds else "not_enrolled",
            next_renewal_unix=self.next_renewal_unix,
            last_renewal_unix=self.last_renewal_unix,
            last_renewal_error=self.last_error,
            renewal_failures=self.failures,
            renewals=self.renewals,
        )


@dataclass(frozen=True)
class RenewalStatistics:
    state: RenewalState
    renewals: int  # certificates renewed since the agent started
    failures: int  # failed attempts in a row (0 after a renewal)
    next_renewal_unix: float
    last_renewal_unix: float
    expires_in_s: float  # of the certificate in use


Subscriber = Callable[[NodeCredentials], Awaitable[None]]


class Renewer:
    def __init__(
        self,
        config: AgentConfig,
        paths: CredentialPaths,
        creds: NodeCredentials,
        clock: Clock,
        rng: random.Random,
        subscribers: list[Subscriber],
    ) -> None:
        self.config = config
        self.paths = paths
        self.creds = creds
        self.clock = clock
        self.rng = rng
        self.subscribers = subscribers
        self.status = RenewalStatus()
        self.policy = BackoffPolicy(config.renewal.retry_initial_s, config.renewal.retry_max_s)
        self._wake = asyncio.Event()
        self._waiters: list[asyncio.Future[NodeCredentials]] = []
        self._attempt = 0
        self._schedule()

    def statistics(self) -> RenewalStatistics:
        s = self.status
        expires = self.creds.cert.not_valid_after_utc.timestamp()
        return RenewalStatistics(
            state=s.state,
            renewals=s.renewals,
            failures=s.failures,
            next_renewal_unix=s.next_renewal_unix,
            last_renewal_unix=s.last_renewal_unix,
            expires_in_s=round(expires - self.clock.wall(), 1),
        )

    @property
    def target_s(self) -> float:
        return self.config.renewal.availability_target_h * 3600

    def _schedule(self) -> None:
        cert = self.creds.cert
        # The hub backdates not_before by pki.CLOCK_SKEW; the lifetime starts at issue.
        issued = cert.not_valid_before_utc.timestamp() + pki.CLOCK_SKEW.total_seconds()
        self.status.next_renewal_unix = renew_at(
            min(issued, cert.not_valid_after_utc.timestamp()),
            cert.not_valid_after_utc.timestamp(),
            self.target_s,
            self.rng,
        )

    async def rotate_now(self) -> NodeCredentials:
        """Renew at once; the new credentials once they are in use, or the EdgeError."""
        waiter: asyncio.Future[NodeCredentials] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake.set()
        return await waiter

    async def run(self) -> None:
        next_trust_check = self.clock.monotonic()
        while True:
            now = self.clock.wall()
            if self.clock.monotonic() >= next_trust_check:
                next_trust_check = (
                    self.clock.monotonic() + self.config.renewal.trust_check_interval_s
                )
                await self._check_trust()
            if self._waiters or now >= self.status.next_renewal_unix:
                await self._renew_and_report()
                continue
            wait = min(
                self.status.next_renewal_unix - now,
                max(0.0, next_trust_check - self.clock.monotonic()),
            )
            self._wake.clear()
            await wait_for_event(self._wake, max(wait, 0.01))

    async def _renew_and_report(self) -> None:
        waiters, self._waiters = self._waiters, []
        self.status.state = RenewalState.RENEWING
        try:
            creds = await self.renew_once()
        except EdgeError as exc:
            self._failed(str(exc))
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(creds)

    def _failed(self, error: str) -> None:
        self.status.failures += 1
        self.status.last_error = error
        now = self.clock.wall()
        not_after = self.creds.cert.not_valid_after_utc.timestamp()
        delay = retry_delay(self._attempt, self.rng, self.policy, not_after - now)
        if not_after <= now:
            # The hub refuses an expired certificate: retry slowly; re-enrolling with a
            # new join token is what brings the node back.
            delay = self.config.renewal.retry_max_s
        self._attempt += 1
        self.status.next_renewal_unix = now + max(delay, 1.0)
        self.status.state = RenewalState.EXPIRED if not_after <= now else RenewalState.RETRYING
        log.warning(
            "certificate renewal failed (%d in a row): %s; retrying at %s; certificate expires %s",
            self._attempt,
            error,
            stamp(self.status.next_renewal_unix),
            stamp(not_after),
        )

    async def renew_once(self) -> NodeCredentials:
        current = self.creds
        key = pki.generate_key()
        csr = pki.build_csr(key, current.identity, current.trust_domain)
        answer = await self._call(
            lambda stub: stub.Renew(
                certs_pb2.RenewRequest(
                    csr_pem=csr,
                    agent_version=PRODUCT_VERSION,
                    last_error=one_line(self.status.last_error, MAX_ERROR_TEXT),
                ),
                timeout=self.config.link.rpc_timeout_s,
            )
        )
        check_answer(key, answer.certificate_pem, answer.ca_bundle_pem, current.identity)
        save(self.paths, key, answer.certificate_pem, answer.ca_bundle_pem)
        creds = load(self.paths)
        await self.adopt(creds)
        self.status.renewals += 1
        self.status.last_renewal_unix = self.clock.wall()
        log.info(
            "renewed: certificate %s (new key) replaces %s, valid until %s; next renewal at %s",
            pki.serial_hex(creds.cert),
            pki.serial_hex(current.cert),
            stamp(creds.cert.not_valid_after_utc.timestamp()),
            stamp(self.status.next_renewal_unix),
        )
        return creds

    async def adopt(self, creds: NodeCredentials) -> None:
        """Use new credentials from now on (after a renewal or a re-enrollment)."""
        self.creds = creds
        self._attempt = 0
        self.status.failures = 0
        self.status.last_error = ""
        self.status.state = RenewalState.SCHEDULED
        self._schedule()
        for subscriber in self.subscribers:
            await subscriber(creds)

    async def _check_trust(self) -> None:
        try:
            answer = await self._call(
                lambda stub: stub.Trust(
                    certs_pb2.TrustRequest(), timeout=self.config.link.rpc_timeout_s
                )
            )
        except EdgeError as exc:
            log.debug("trust bundle not fetched: %s", exc)
            return
        if answer.ca_bundle_pem != self.creds.bundle_pem:
            try:
                save_bundle(self.paths, answer.ca_bundle_pem, self.creds.cert)
                self.creds = load(self.paths)
            except CredentialError as exc:
                log.warning("kept the current trust bundle: %s", exc)
                return
            log.info("trust bundle updated: %d CA(s)", len(self.creds.bundle))
            for subscriber in self.subscribers:  # new connections verify with the new bundle
                await subscriber(self.creds)
        issuer = next((ca for ca in self.creds.bundle if pki.signed_by(self.creds.cert, ca)), None)
        if issuer is not None and pki.fingerprint(issuer) != answer.signing_ca_fingerprint:
            spread = self.rng.uniform(0.0, self.config.renewal.rollover_spread_s)
            when = self.clock.wall() + spread
            if when < self.status.next_renewal_unix:
                self.status.next_renewal_unix = when
                log.info("the hub signs with a new CA; renewing onto it at %s", stamp(when))

    async def _call(
        self, method: Callable[[certs_pb2_grpc.CertsStub], Awaitable[object]]
    ) -> object:
        target = self.config.agent.hub
        async with grpc.aio.secure_channel(
            target,
            channel_credentials(self.creds),
            options=grpcopts.client_options(private_connection=True),
        ) as channel:
            try:
                return await method(certs_pb2_grpc.CertsStub(channel))
            except grpc.aio.AioRpcError as err:
                raise_from_rpc(err, f"hub {target}")
