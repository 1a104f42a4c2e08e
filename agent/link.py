"""The agent's stream to the hub: register, heartbeat, receive, and reconnect forever.

Each attempt opens a fresh mTLS channel (a private connection), registers, and then
sends heartbeats while reading what the hub sends. When the stream ends for any
reason the agent waits a capped, fully jittered backoff (never less than a delay the
hub asked for) and tries again. A registered stream resets the backoff.
"""

import asyncio
import logging
import random
import socket
from collections.abc import Callable

import grpc

from agent.config import AgentConfig
from agent.credentials import NodeCredentials
from agent.status import HubState, LinkStatus
from agent.telemetry import Telemetry
from edgecommon import grpcopts
from edgecommon.backoff import BackoffPolicy
from edgecommon.clock import stamp
from edgecommon.pb import link_pb2, link_pb2_grpc
from edgecommon.version import PRODUCT_VERSION

log = logging.getLogger("edge-agent.link")
HubHandler = Callable[[link_pb2.HubMessage], None]


class StreamEnded(Exception):
    """The hub closed the stream or asked the agent to back off for `floor_s`."""

    def __init__(self, reason: str, floor_s: float = 0.0) -> None:
        super().__init__(reason)
        self.floor_s = floor_s


def channel_credentials(creds: NodeCredentials) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=creds.bundle_pem,
        private_key=creds.key_pem,
        certificate_chain=creds.cert_pem,
    )


class HubLink:
    def __init__(
        self,
        config: AgentConfig,
        creds: NodeCredentials,
        status: LinkStatus,
        telemetry: Telemetry,
        rng: random.Random,
        on_message: HubHandler | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.creds = creds
        self.status = status
        self.telemetry = telemetry
        self.rng = rng
        self.on_message = on_message
        self.labels = labels if labels is not None else dict(config.agent.labels)
        self.policy = BackoffPolicy(config.link.reconnect_initial_s, config.link.reconnect_max_s)
        self.heartbeat_interval_s = config.link.heartbeat_interval_s
        self.started_unix = status.clock.wall()
        self._seq = 0

    async def run(self) -> None:
        attempt = 0
        while True:
            self.status.enter(HubState.CONNECTING, self.status.last_error)
            floor, error = 0.0, ""
            registered_before = self.status.connects
            try:
                await self._attempt()
            except StreamEnded as ended:
                floor, error = ended.floor_s, str(ended)
            except grpc.aio.AioRpcError as err:
                error = describe_rpc_error(err, self.config.agent.hub, self.creds, self.status)
            except TimeoutError:
                error = f"hub {self.config.agent.hub} did not answer registration in time"
            if self.status.connects > registered_before:
                attempt = 0
            delay = self.policy.delay(attempt, self.rng, floor)
            attempt += 1
            log.warning("link to hub down: %s; reconnecting in %.1fs", error, delay)
            self.status.enter(HubState.BACKOFF, error, self.status.clock.wall() + delay)
            await asyncio.sleep(delay)

    async def _attempt(self) -> None:
        async with grpc.aio.secure_channel(
            self.config.agent.hub,
            channel_credentials(self.creds),
            options=grpcopts.client_options(private_connection=True),
        ) as channel:
            call = link_pb2_grpc.LinkStub(channel).Connect(
                timeout=self.config.link.stream_max_age_s
            )
            try:
                await self._register(call)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._send_heartbeats(call))
                    tg.create_task(self._receive(call))
            except* StreamEnded as group:
                raise group.exceptions[0] from None
            except* grpc.aio.AioRpcError as group:
                raise group.exceptions[0] from None
            finally:
                call.cancel()

    async def _register(self, call: grpc.aio.StreamStreamCall) -> None:
        await call.write(
            link_pb2.AgentMessage(
                register=link_pb2.Register(
                    agent_version=PRODUCT_VERSION,
                    labels=self.labels,
                    started_unix=self.started_unix,
                    hostname=socket.gethostname(),
                )
            )
        )
        first = await asyncio.wait_for(call.read(), self.config.link.connect_timeout_s)
        if first is grpc.aio.EOF:
            raise StreamEnded("hub closed the stream before registering")
        body = first.WhichOneof("body")
        if body == "backoff":
            raise StreamEnded(
                f"hub asked to back off {first.backoff.retry_after_s:.1f}s: {first.backoff.reason}",
                first.backoff.retry_after_s,
            )
        if body != "registered":
            raise StreamEnded(f"hub answered registration with {body}")
        self.heartbeat_interval_s = (
            first.registered.heartbeat_interval_s or self.heartbeat_interval_s
        )
        self.status.connects += 1
        self.status.enter(HubState.CONNECTED)
        log.info("connected to hub %s as %s", self.config.agent.hub, self.creds.identity)

    async def _send_heartbeats(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            self._seq += 1
            beat = self.telemetry.heartbeat(self._seq, PRODUCT_VERSION)
            await call.write(link_pb2.AgentMessage(heartbeat=beat))
            self.status.heartbeats_sent += 1
            await asyncio.sleep(self.heartbeat_interval_s)

    async def _receive(self, call: grpc.aio.StreamStreamCall) -> None:
        while (message := await call.read()) is not grpc.aio.EOF:
            if message.WhichOneof("body") == "backoff":
                raise StreamEnded(
                    f"hub asked to back off: {message.backoff.reason}",
                    message.backoff.retry_after_s,
                )
            if self.on_message is not None:
                self.on_message(message)
        code = await call.code()
        details = await call.details()
        raise StreamEnded(f"hub ended the stream ({code.name}: {details or 'no details'})")


def describe_rpc_error(
    err: grpc.aio.AioRpcError, hub: str, creds: NodeCredentials, status: LinkStatus
) -> str:
    """Why the link failed, in words. A failed handshake looks like UNAVAILABLE whatever its
    cause, so the agent checks its own certificate before blaming the hub."""
    code = err.code()
    expires = creds.cert.not_valid_after_utc.timestamp()
    if code is grpc.StatusCode.UNAVAILABLE and expires <= status.clock.wall():
        return (
            f"this node's certificate expired at {stamp(expires)}; the hub will refuse it: "
            "re-enroll with a new join token"
        )
    if code is grpc.StatusCode.UNAVAILABLE:
        return f"hub {hub} unavailable ({err.details()})"
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"hub {hub} stream reached its deadline"
    return f"hub {hub} refused the stream ({code.name}: {err.details()})"
