"""The agent's stream to the hub: register, apply, heartbeat, acknowledge, reconnect forever.

Each attempt opens a fresh mTLS channel (a private connection) and registers, telling the
hub which hub-issued stops it holds latched. The hub's first answer carries every stop
that applies to this node, releases of stops it holds, and the fleet switch; the agent
applies all of it (durably) before it calls itself connected. Afterwards one task sends
heartbeats, one reads hub messages, and one writer owns the stream's write side.

The link only moves messages: each hub message goes to the handler of its kind
(agent.link.hub_messages.Handlers), whose replies it writes; each heartbeat carries what the
subsystems add to it. A stop is acknowledged only after it is latched on disk (its
handler replies then).

When the stream ends for any reason the agent waits a capped, fully jittered backoff
(never less than a delay the hub asked for) and tries again; a registered stream resets
the backoff.
"""

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import grpc

from agent.config import AgentConfig
from agent.link.hub_messages import LINK_KINDS, Handlers, HeartbeatPart, Reply
from agent.link.status import HubState, LinkStatus
from agent.link.telemetry import Telemetry
from agent.pki.credentials import NodeCredentials, channel_credentials
from agent.safety.runner import Safety
from edgecommon import grpcopts, pki
from edgecommon.backoff import BackoffPolicy
from edgecommon.boundary import conform
from edgecommon.cadence import wait_for_event
from edgecommon.cancellation import guarded
from edgecommon.clock import stamp
from edgecommon.pb import link_pb2, link_pb2_grpc
from edgecommon.version import PRODUCT_VERSION

log = logging.getLogger("edge-agent.link")
Outbox = asyncio.Queue[link_pb2.AgentMessage]


class StreamEnded(Exception):
    """The hub closed the stream or asked the agent to back off for `floor_s`."""

    def __init__(self, reason: str, floor_s: float = 0.0) -> None:
        super().__init__(reason)
        self.floor_s = floor_s


class Handover(Exception):
    """A stream with the renewed certificate is registered and takes over."""

    def __init__(self, stream: "_Stream") -> None:
        super().__init__("handover")
        self.stream = stream


@dataclass(frozen=True)
class HubLinkStatistics:
    state: HubState
    since_unix: float  # when it entered that state
    connects: int  # streams registered since the agent started
    disconnects: int  # registered streams that went down
    backoffs: int  # waits before another attempt
    heartbeats_sent: int
    outbox: int  # messages waiting to be written to the hub
    handovers: int  # moves of the stream to a renewed certificate
    handover_failures: int
    draining: int  # replaced streams still applying what the hub sent on them
    credential_problem: bool  # this node's own credential cannot work (see last_error)
    last_error: str


@dataclass(eq=False)
class _Stream:
    channel: grpc.aio.Channel
    call: grpc.aio.StreamStreamCall
    outbox: Outbox
    handing_over: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class LinkCredentials:
    """The certificate the hub stream uses, and requests to move an open stream onto a new
    one. Renewal and re-enrollment call `move_to`; HubLink reads `current` for each stream
    it opens and carries the moves out. An object of its own, built before both, because
    the two need each other: the link asks for a re-enrollment when the hub refuses its
    certificate, and every new certificate moves the link."""

    def __init__(self, creds: NodeCredentials, status: LinkStatus, timeout_s: float) -> None:
        self.current = creds
        self.status = status
        self.timeout_s = timeout_s  # [renewal].handover_timeout_s
        self.wake = asyncio.Event()  # a move is waiting for the link
        self._waiting: list[asyncio.Future[None]] = []
        self._carrying = False  # a stream carries the link

    async def move_to(self, creds: NodeCredentials) -> None:
        """Use `creds` from now on. A new certificate moves the open stream: a second
        stream is opened and registered with it before the first one is let go, so the
        link never drops. Returns once the new stream carries the link (or at once when
        no stream is open: the next connection uses `creds`)."""
        moved = creds.cert != self.current.cert
        self.current = creds
        if not moved or not self._carrying:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(done)
        self.wake.set()
        try:
            async with asyncio.timeout(self.timeout_s):
                await asyncio.shield(done)
        except TimeoutError:
            self.status.handover_failures += 1
            log.warning("the hub stream did not move to the new certificate in time")

    @contextlib.contextmanager
    def carrying(self) -> Iterator[None]:
        """While a stream carries the link (a move waits for the link to carry it out)."""
        self._carrying = True
        try:
            yield
        finally:
            self._carrying = False

    def moved(self) -> None:
        """A stream with the current certificate carries the link: the moves are done."""
        for done in self._waiting:
            if not done.done():
                done.set_result(None)
        self._waiting.clear()


class HubLink:
    def __init__(
        self,
        config: AgentConfig,
        credentials: LinkCredentials,
        status: LinkStatus,
        telemetry: Telemetry,
        safety: Safety,
        handlers: Handlers,
        heartbeat: Sequence[HeartbeatPart],
        on_credential_problem: Callable[[], Awaitable[bool]],
        rng: random.Random,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.status = status
        self.telemetry = telemetry
        self.safety = safety
        self.handlers = handlers
        self.heartbeat = tuple(heartbeat)  # what each subsystem adds to every heartbeat
        # Re-enroll when the hub refuses this node's credential; True when it did.
        self.on_credential_problem = on_credential_problem
        self.rng = rng
        self.labels = labels if labels is not None else dict(config.agent.labels)
        self.policy = BackoffPolicy(config.link.reconnect_initial_s, config.link.reconnect_max_s)
        self.heartbeat_interval_s = config.link.heartbeat_interval_s
        self.started_unix = status.clock.wall()
        self._seq = 0
        # Read by statistics(): the stream carrying the link, and the replaced streams
        # being drained (the tasks belong to run()'s task group; this only observes them).
        self._serving: _Stream | None = None
        self._drains: set[asyncio.Task[None]] = set()

    @property
    def creds(self) -> NodeCredentials:
        return self.credentials.current

    def statistics(self) -> HubLinkStatistics:
        status, serving = self.status, self._serving
        return HubLinkStatistics(
            state=status.state,
            since_unix=status.since_unix,
            connects=status.connects,
            disconnects=status.disconnects,
            backoffs=status.backoffs,
            heartbeats_sent=status.heartbeats_sent,
            outbox=serving.outbox.qsize() if serving is not None else 0,
            handovers=status.handovers,
            handover_failures=status.handover_failures,
            draining=sum(1 for task in self._drains if not task.done()),
            credential_problem=bool(status.credential_problem),
            last_error=status.last_error,
        )

    async def run(self) -> None:
        # Replaced streams are drained beside the link and belong to this group: they end
        # with the link (shutdown cancels them with it), never outlive it.
        async with asyncio.TaskGroup() as drains:
            await self._connect_forever(drains)

    async def _connect_forever(self, drains: asyncio.TaskGroup) -> None:
        attempt = 0
        stream: _Stream | None = None
        while True:
            floor, error = 0.0, ""
            registered_before = self.status.connects
            try:
                # Each attempt runs guarded: a stream failing as shutdown cancels this
                # loop must end it, not send it round again (edgecommon.cancellation).
                if stream is None:
                    self.status.enter(HubState.CONNECTING, self.status.last_error)
                    stream = await guarded(self._open())
                # A handover returns the stream that replaced this one: no gap, no backoff.
                stream = await guarded(self._serve(stream, drains))
                continue
            except StreamEnded as ended:
                floor, error = ended.floor_s, str(ended)
            except grpc.aio.AioRpcError as err:
                error = describe_rpc_error(err, self.config.agent.hub, self.creds, self.status)
            except TimeoutError:
                error = f"hub {self.config.agent.hub} did not answer registration in time"
            except asyncio.InvalidStateError as exc:
                # Writing the registration on a call the hub already finished.
                error = f"the hub ended the stream ({exc})"
            stream = None
            self.safety.link_changed(up=False)
            if self.status.connects > registered_before:
                attempt = 0
            if self.status.credential_problem and await self.on_credential_problem():
                # The backoff was about the refused credential; the new one is tried now.
                attempt = 0
                log.info("link to hub down: %s; reconnecting now with a new certificate", error)
                continue
            delay = self.policy.delay(attempt, self.rng, floor)
            attempt += 1
            log.warning("link to hub down: %s; reconnecting in %.1fs", error, delay)
            self.status.enter(HubState.BACKOFF, error, self.status.clock.wall() + delay)
            await asyncio.sleep(delay)

    async def _open(self) -> "_Stream":
        channel = grpc.aio.secure_channel(
            self.config.agent.hub,
            channel_credentials(self.creds),
            options=grpcopts.client_options(private_connection=True),
        )
        call = link_pb2_grpc.LinkStub(channel).Connect(timeout=self.config.link.stream_max_age_s)
        stream = _Stream(channel, call, asyncio.Queue())
        try:
            await self._register(call, stream.outbox)
        except BaseException:
            call.cancel()
            await channel.close()
            raise
        return stream

    async def _serve(self, stream: "_Stream", drains: asyncio.TaskGroup) -> "_Stream":
        """Carry the link on `stream` until it fails (raises) or a handover replaces it
        (returns the new stream, already registered; `stream` is drained in `drains`)."""
        handover: Handover | None = None
        self._serving = stream
        with self.credentials.carrying():
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._write(stream))
                    tg.create_task(self._send_heartbeats(stream.outbox))
                    tg.create_task(self._receive(stream))
                    tg.create_task(self._await_handover(stream))
            except* Handover as group:
                handover = group.exceptions[0]  # type: ignore[assignment]
            except* (StreamEnded, grpc.aio.AioRpcError, asyncio.InvalidStateError) as group:
                # One ending reported by several tasks (say the reader saw the hub close and
                # the writer hit the finished call): the first one says why. If a handover
                # completed at the same moment, the new stream carries on.
                stream.call.cancel()
                await stream.channel.close()
                first = group.exceptions[0]
                if handover is None and isinstance(first, asyncio.InvalidStateError):
                    raise StreamEnded(f"the hub ended the stream ({first})") from None
                if handover is None:
                    raise first from None
            finally:
                self._serving = None
        if handover is None:
            raise StreamEnded("the stream tasks ended without a reason")
        return self._take_over(stream, handover.stream, drains)

    def _take_over(self, old: "_Stream", new: "_Stream", drains: asyncio.TaskGroup) -> "_Stream":
        while not old.outbox.empty():
            message = old.outbox.get_nowait()
            if message.WhichOneof("body") != "heartbeat":
                new.outbox.put_nowait(message)
        self._drains = {t for t in self._drains if not t.done()}
        self._drains.add(
            drains.create_task(self._drain(old, new.outbox), name="drain replaced hub stream")
        )
        self.status.handovers += 1
        self.credentials.moved()
        log.info(
            "hub stream moved to a new connection (certificate %s)", pki.serial_hex(self.creds.cert)
        )
        return new

    async def _await_handover(self, stream: "_Stream") -> None:
        refresh_at = self.status.clock.monotonic() + self.config.link.stream_refresh_s
        while True:
            left = refresh_at - self.status.clock.monotonic()
            if not await wait_for_event(self.credentials.wake, max(left, 0.0)):
                # Move to a fresh connection before the hub's connection-age limit
                # ([certs].max_connection_age_s) ends this one under the stream.
                refresh_at = self.status.clock.monotonic() + self.config.link.stream_refresh_s
            self.credentials.wake.clear()
            # From here the hub may end the old stream at any moment (it does so as soon
            # as the new one registers): that ending is expected, not a failure.
            stream.handing_over = True
            try:
                new = await self._open()
            except (grpc.aio.AioRpcError, StreamEnded, TimeoutError) as exc:
                self.status.handover_failures += 1
                stream.handing_over = False
                log.warning("could not open a stream with the new certificate: %s", exc)
                if stream.ended.is_set():
                    raise StreamEnded(
                        f"the stream ended during a failed handover ({exc})"
                    ) from None
                continue  # the old stream keeps the link; the next renewal tries again
            raise Handover(new)

    async def _drain(self, old: "_Stream", outbox: Outbox) -> None:
        """Apply what the hub still sends on a replaced stream until it ends it (the hub
        closes the old session when the new one registers), then let it go."""
        try:
            async with asyncio.timeout(self.config.renewal.handover_timeout_s):
                while (message := await old.call.read()) is not grpc.aio.EOF:
                    await self._apply(message, outbox.put_nowait)
        except (TimeoutError, grpc.aio.AioRpcError, StreamEnded, asyncio.InvalidStateError):
            pass
        finally:
            old.call.cancel()
            await old.channel.close()

    async def _register(self, call: grpc.aio.StreamStreamCall, outbox: Outbox) -> None:
        await call.write(
            conform(
                link_pb2.AgentMessage(
                    register=link_pb2.Register(
                        agent_version=PRODUCT_VERSION,
                        labels=self.labels,
                        started_unix=self.started_unix,
                        hostname=socket.gethostname(),
                        latched_stop_ids=self.safety.hub_stop_ids(),
                        fleet_switch_revision=self.safety.fleet.revision,
                    )
                )
            )
        )
        async with asyncio.timeout(self.config.link.connect_timeout_s):
            first = await call.read()
        if first is grpc.aio.EOF:
            raise StreamEnded("hub closed the stream before registering")
        body = first.WhichOneof("body")
        if body == "backoff":
            self.safety.hub_answered()  # reachable, only busy: not "unreachable" for INV-BOOT-01
            raise StreamEnded(
                f"hub asked to back off {first.backoff.retry_after_s:.1f}s: {first.backoff.reason}",
                first.backoff.retry_after_s,
            )
        if body != "registered":
            raise StreamEnded(f"hub answered registration with {body}")
        registered, reply = first.registered, outbox.put_nowait
        for stop in registered.stops:
            await self._apply(link_pb2.HubMessage(estop=stop), reply)
        for release in registered.releases:
            await self._apply(link_pb2.HubMessage(estop_release=release), reply)
        if registered.HasField("fleet_switch"):
            await self._apply(link_pb2.HubMessage(fleet_switch=registered.fleet_switch), reply)
        if registered.HasField("revocations"):
            await self._apply(link_pb2.HubMessage(revocations=registered.revocations), reply)
        # Acknowledgements go out before the first heartbeat.
        while not outbox.empty():
            await call.write(outbox.get_nowait())
        self.heartbeat_interval_s = registered.heartbeat_interval_s or self.heartbeat_interval_s
        self.status.connects += 1
        self.status.credential_problem = ""
        self.status.enter(HubState.CONNECTED)
        self.safety.link_changed(up=True)
        log.info("connected to hub %s as %s", self.config.agent.hub, self.creds.identity)

    async def _apply(self, message: link_pb2.HubMessage, reply: Reply) -> None:
        kind = message.WhichOneof("body")
        if kind == "backoff":
            raise StreamEnded(
                f"hub asked to back off: {message.backoff.reason}", message.backoff.retry_after_s
            )
        # None: a kind this agent does not know (a newer hub); a late `registered` means
        # nothing once the stream is registered.
        if kind is not None and kind not in LINK_KINDS:
            await self.handlers.handle(kind, message, reply)

    async def _write(self, stream: "_Stream") -> None:
        while True:
            message = await stream.outbox.get()
            try:
                await stream.call.write(conform(message))
            except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
                if not stream.handing_over:
                    raise
                stream.outbox.put_nowait(message)  # the new stream sends it
                await stream.ended.wait()
                await asyncio.Future()  # until the handover cancels this task
            if message.WhichOneof("body") == "heartbeat":
                self.status.heartbeats_sent += 1

    async def _send_heartbeats(self, outbox: Outbox) -> None:
        while True:
            self._seq += 1
            beat = self.telemetry.heartbeat(self._seq, PRODUCT_VERSION)
            for add_to in self.heartbeat:
                await add_to(beat)
            outbox.put_nowait(link_pb2.AgentMessage(heartbeat=beat))
            await asyncio.sleep(self.heartbeat_interval_s)

    async def _receive(self, stream: "_Stream") -> None:
        call = stream.call
        while (message := await call.read()) is not grpc.aio.EOF:
            await self._apply(message, stream.outbox.put_nowait)
        stream.ended.set()
        if stream.handing_over:
            await asyncio.Future()  # until the handover cancels this task (or fails)
        code = await call.code()
        details = await call.details()
        raise StreamEnded(f"hub ended the stream ({code.name}: {details or 'no details'})")


def describe_rpc_error(
    err: grpc.aio.AioRpcError, hub: str, creds: NodeCredentials, status: LinkStatus
) -> str:
    """Why the link failed, in words. A failed handshake looks like UNAVAILABLE whatever its
    cause, so the agent checks its own certificate before blaming the hub."""
    code = err.code()
    problem = credential_problem(creds, status.clock.wall())
    if code is grpc.StatusCode.UNAUTHENTICATED:
        problem = f"the hub refuses this node's certificate: {err.details()}"
    status.credential_problem = problem
    if problem:
        return problem
    if code is grpc.StatusCode.UNAVAILABLE:
        return f"hub {hub} unavailable ({err.details()})"
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"hub {hub} stream reached its deadline"
    return f"hub {hub} refused the stream ({code.name}: {err.details()})"


def credential_problem(creds: NodeCredentials, now: float) -> str:
    """Why this node's own credential cannot work, checked locally, or "" (a handshake
    the hub refuses looks like a plain UNAVAILABLE to the agent)."""
    expires = creds.cert.not_valid_after_utc.timestamp()
    if expires <= now:
        return (
            f"this node's certificate {pki.serial_hex(creds.cert)} expired at {stamp(expires)}; "
            "the hub will refuse it: put a new join token in [agent].join_token_file to "
            "re-enroll (state is kept)"
        )
    if not any(pki.signed_by(creds.cert, ca) for ca in creds.bundle):
        return "this node's trust bundle does not hold the CA of its own certificate"
    return ""
