"""Benchmark fleet-wide certificate renewal against a real hub.

    .venv/bin/python bench/renewal.py [--agents 1000] [--procs 4] [--repeat 3] [--renew-only]
        [--settle S] [--baseline S]  (and harness.py's options)

A real hub process and N simulated agents spread over P worker processes (this script's
`_worker` mode, started as a new process, never forked after importing grpc). Each simulated
agent has its own node certificate (signed here with the hub's CA instead of N enrollments),
its own channel (grpc.use_local_subchannel_pool=1, so its own mTLS connection) and an open
Link.Connect stream with a heartbeat every second.

Each round, all N agents renew at once, the way edge-agent does: a new key, a CSR over the
open mTLS connection (Certs.Renew), then a new channel with the new certificate, a new
stream registered on it, and the old stream let go once the hub ends it (handover; no
drop). Heartbeats keep flowing the whole time. Reported per round: time until all N were
renewed (signatures answered) and until all N streams moved, hub signatures per second, hub
CPU, per-agent renewal latency, and every RPC that failed: renewals, registrations on the
new stream, heartbeats, and old streams that ended with an error instead of the hub's
orderly close. Across rounds: median / p99 / max. "Hub CPU per agent" subtracts the hub's
heartbeat-only CPU rate measured for --baseline s before each round. No floor.
"""

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import harness
from _worker import Command, load_spec, raise_nofile, serve_commands
from harness import Hub, Run, Workers, at_least, progress

from edgecommon import grpcopts, pki
from edgecommon.identity import Identity, Kind
from edgecommon.pb import certs_pb2, certs_pb2_grpc, link_pb2, link_pb2_grpc

GROUP = "bench"
HUB_SECTIONS = (
    "[link]\nmax_registrations_per_s = 100000\nregistration_burst = 100000\noffline_after_s = 30\n"
)
SMOKE = {"agents": 2, "procs": 1, "repeat": 1, "settle": 0.2, "baseline": 0.2, "timeout": 60.0}


# --- simulated agents (worker processes) -------------------------------------------------


@dataclass(eq=False)
class Stream:
    channel: grpc.aio.Channel
    call: grpc.aio.StreamStreamCall
    replaced: bool = False  # set before the new stream registers: the hub then ends this one


@dataclass(eq=False)
class SimAgent:
    name: str
    key_pem: bytes
    cert_pem: bytes
    bundle: bytes
    target: str
    stream: Stream | None = None
    failures: list[str] = field(default_factory=list)
    teardown: list[str] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    seq: int = 0

    async def open(self) -> Stream:
        creds = grpc.ssl_channel_credentials(self.bundle, self.key_pem, self.cert_pem)
        channel = grpc.aio.secure_channel(
            self.target, creds, options=grpcopts.client_options(private_connection=True)
        )
        call = link_pb2_grpc.LinkStub(channel).Connect()
        await call.write(link_pb2.AgentMessage(register=link_pb2.Register(agent_version="bench")))
        first = await asyncio.wait_for(call.read(), 30)
        if first is grpc.aio.EOF or first.WhichOneof("body") != "registered":
            await channel.close()
            raise RuntimeError(f"registration answered with {first}")
        stream = Stream(channel, call)
        task = asyncio.create_task(self.read(stream))
        self.tasks.add(task)
        return stream

    async def read(self, stream: Stream) -> None:
        try:
            while (message := await stream.call.read()) is not grpc.aio.EOF:
                if message.WhichOneof("body") == "backoff":
                    self.failures.append("told to back off")
            code = await stream.call.code()
            if code is not grpc.StatusCode.OK or not stream.replaced:
                self.failures.append(f"stream ended: {code.name}")
                self.lost(stream)
        except grpc.aio.AioRpcError as err:
            if not stream.replaced:
                self.failures.append(f"stream failed: {err.code().name}: {err.details()}")
                self.lost(stream)
            elif err.code() is not grpc.StatusCode.CANCELLED:
                # The hub closed this superseded stream in order; grpc sometimes reports
                # that close as an error when a write raced it. Nothing is lost: counted
                # apart from failed RPCs.
                self.teardown.append(f"{err.code().name}: {err.details()}")
        except Exception as exc:  # anything else that ended the reader is a failure too
            self.failures.append(f"stream read: {type(exc).__name__}: {exc}")
        finally:
            if stream.replaced:
                stream.call.cancel()
                await stream.channel.close()

    def lost(self, stream: Stream) -> None:
        """The stream died under us: reconnect, as edge-agent does (counted as a failure)."""
        if self.stream is stream:
            self.stream = None
            task = asyncio.create_task(self.reconnect())
            self.tasks.add(task)

    async def reconnect(self) -> None:
        for attempt in range(50):
            await asyncio.sleep(0.2 * min(attempt + 1, 10))
            try:
                self.stream = await self.open()
                return
            except (grpc.aio.AioRpcError, RuntimeError, TimeoutError):
                continue

    async def heartbeats(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            stream = self.stream
            if stream is None:
                continue
            self.seq += 1
            beat = link_pb2.AgentMessage(heartbeat=link_pb2.Heartbeat(seq=self.seq))
            try:
                await stream.call.write(beat)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
                if not stream.replaced:
                    self.failures.append(f"heartbeat: {type(exc).__name__}: {exc}")
                    continue
                # The hub ended the stream being replaced: like edge-agent, send the
                # heartbeat on the new stream once it is registered.
                if await self.resend_after_move(stream, beat):
                    continue
                self.failures.append(f"heartbeat lost in the move: {type(exc).__name__}")

    async def resend_after_move(self, old: Stream, beat: link_pb2.AgentMessage) -> bool:
        for _ in range(600):
            if self.stream is not old and self.stream is not None:
                try:
                    await self.stream.call.write(beat)
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    return False
                return True
            if not old.replaced:  # the move failed
                return False
            await asyncio.sleep(0.05)
        return False

    async def rotate(self, move: bool) -> tuple[float, float]:
        """Renew (new key) and move the stream; returns (signed_at, moved_at) wall times."""
        if self.stream is None:
            raise RuntimeError(f"{self.name} has no stream to rotate")
        key = pki.generate_key()
        csr = pki.build_csr(key, Identity(Kind.NODE, self.name, GROUP), "edge")
        try:
            answer = await certs_pb2_grpc.CertsStub(self.stream.channel).Renew(
                certs_pb2.RenewRequest(csr_pem=csr, agent_version="bench"), timeout=60
            )
        except grpc.aio.AioRpcError as err:
            self.failures.append(f"renew: {err.code().name}")
            return float("nan"), float("nan")
        signed = time.time()
        self.key_pem = pki.private_key_bytes(key)
        self.cert_pem = answer.certificate_pem
        self.bundle = answer.ca_bundle_pem
        if not move:
            return signed, signed
        old = self.stream
        old.replaced = True
        try:
            new = await self.open()
        except (grpc.aio.AioRpcError, RuntimeError, TimeoutError) as exc:
            old.replaced = False
            self.failures.append(f"new stream: {type(exc).__name__}")
            return signed, float("nan")
        self.stream = new
        return signed, time.time()


@dataclass
class RenewalWorker:
    """The agents of one worker process and the commands the driver sends them."""

    spec: dict[str, Any]
    agents: list[SimAgent]
    beats: list[asyncio.Task[None]] = field(default_factory=list)

    async def connect(self) -> Command:
        """Open every agent's stream, start heartbeats, let a connect storm settle."""

        async def connect(agent: SimAgent) -> None:
            for attempt in range(20):
                try:
                    agent.stream = await agent.open()
                    return
                except (grpc.aio.AioRpcError, RuntimeError, TimeoutError):
                    await asyncio.sleep(0.2 * (attempt + 1))
            raise RuntimeError(f"{agent.name} could not connect")

        await asyncio.gather(*(connect(a) for a in self.agents))
        self.beats = [asyncio.create_task(a.heartbeats()) for a in self.agents]
        await asyncio.sleep(self.spec["settle_s"] * 3)  # streams lost in it reconnect
        lost = sum(len(a.failures) for a in self.agents)
        for _ in range(300):
            if all(a.stream is not None for a in self.agents):
                break
            await asyncio.sleep(0.1)
        return {"connected": len(self.agents), "lost_while_connecting": lost}

    async def rotate(self) -> Command:
        go = time.time()
        before = [len(a.failures) for a in self.agents]
        torn = [len(a.teardown) for a in self.agents]
        results = await asyncio.gather(*(a.rotate(self.spec["move"]) for a in self.agents))
        await asyncio.sleep(self.spec["settle_s"] * 2)  # heartbeats on the new streams
        pairs = zip(self.agents, before, strict=True)
        return {
            "go": go,
            "signed": [s - go for s, _ in results],
            "moved": [m - go for _, m in results],
            "failures": [f for a, n in pairs for f in a.failures[n:]],
            "teardown": [f for a, n in zip(self.agents, torn, strict=True) for f in a.teardown[n:]],
        }

    async def handle(self, command: Command) -> Command:
        if command["cmd"] == "connect":
            return await self.connect()
        if command["cmd"] == "rotate":
            return await self.rotate()
        return {"error": f"unknown command {command['cmd']!r}"}


async def worker(spec: dict[str, Any]) -> None:
    certs = Path(spec["certs"])
    bundle = (certs / "ca.crt").read_bytes()
    agents = [
        SimAgent(
            n,
            (certs / f"{n}.key").read_bytes(),
            (certs / f"{n}.crt").read_bytes(),
            bundle,
            spec["target"],
        )
        for n in spec["names"]
    ]
    state = RenewalWorker(spec, agents)
    await serve_commands(state.handle)
    for task in state.beats:
        task.cancel()
    for agent in agents:
        if agent.stream is not None:
            agent.stream.call.cancel()
            await agent.stream.channel.close()


# --- driver ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Round:
    renewed: int
    all_signed_s: float
    all_moved_s: float
    signatures_per_s: float
    hub_cpu_s: float
    hub_cpu_ms_per_agent: float
    latency: list[float]
    failures: list[str]
    teardown: list[str]


async def one_round(run: Run, hub: Hub, workers: Workers) -> Round:
    assert hub.proc is not None
    # Baseline: the hub's CPU for heartbeats alone, subtracted from the round's.
    idle0, t0 = hub.proc.cpu_s(), time.monotonic()
    await asyncio.sleep(run.args.baseline)
    idle_rate = (hub.proc.cpu_s() - idle0) / (time.monotonic() - t0)
    cpu0, started = hub.proc.cpu_s(), time.monotonic()
    results = await workers.ask_all({"cmd": "rotate"}, run.args.timeout)
    cpu = hub.proc.cpu_s() - cpu0
    extra_cpu = cpu - idle_rate * (time.monotonic() - started)
    go = min(r["go"] for r in results)
    signed = [r["go"] - go + s for r in results for s in r["signed"] if s == s]
    moved = [r["go"] - go + m for r in results for m in r["moved"] if m == m]
    return Round(
        renewed=len(signed),
        all_signed_s=max(signed) if signed else float("nan"),
        all_moved_s=max(moved) if moved else float("nan"),
        signatures_per_s=len(signed) / max(signed) if signed else 0.0,
        hub_cpu_s=cpu,
        hub_cpu_ms_per_agent=1000 * extra_cpu / max(len(signed), 1),
        latency=signed,
        failures=[f for r in results for f in r["failures"]],
        teardown=[f for r in results for f in r["teardown"]],
    )


async def scenario(run: Run) -> None:
    args = run.args
    hub = run.hub("hub", hub_keys='log_level = "warning"', sections=HUB_SECTIONS)
    await hub.start()
    await hub.wait_listening()  # listening: its CA and certificate exist
    names = [f"node-{i:05d}" for i in range(args.agents)]
    identities = [Identity(Kind.NODE, name, GROUP) for name in names]
    took = await asyncio.to_thread(harness.write_node_certs, hub, identities)
    progress(f"signed {args.agents} node certificates in {took:.1f}s")
    spec = {
        "certs": str(hub.certs),
        "target": hub.listen,
        "move": not args.renew_only,
        "settle_s": args.settle,
    }
    specs = [spec | {"names": names[i :: args.procs]} for i in range(args.procs)]
    argv = [__file__, "_worker"]
    workers = await Workers.start(run.children, "renewal", argv, specs, args.timeout)
    try:
        connected = await workers.ask_all({"cmd": "connect"}, args.timeout + 30)
        lost = sum(c["lost_while_connecting"] for c in connected)
        rounds = []
        for k in range(args.repeat):
            rounds.append(await one_round(run, hub, workers))
            progress(f"round {k + 1}: all renewed in {rounds[-1].all_signed_s:.2f}s")
    finally:
        await workers.stop()
        await hub.close()
    what = " (renew only)" if args.renew_only else ""
    section = run.report.section(
        f"renewal{what}: {args.agents} agents in {args.procs} workers, {len(rounds)} round(s); "
        "per round, median / p99 / max across rounds"
    )
    for label, unit, key in (
        ("all renewed", "s", "all_signed_s"),
        ("all streams moved", "s", "all_moved_s"),
        ("hub signatures per second", "/s", "signatures_per_s"),
        ("hub CPU per round", "s", "hub_cpu_s"),
        ("hub CPU per agent (heartbeat baseline removed)", "ms", "hub_cpu_ms_per_agent"),
        ("renewed per round", "count", "renewed"),
    ):
        section.add(label, unit, harness.summarize(getattr(r, key) for r in rounds))
    latency = [x for r in rounds for x in r.latency]
    section.add("per agent renewal latency, all rounds", "s", harness.summarize(latency))
    failures = [f for r in rounds for f in r.failures]
    teardown = [f for r in rounds for f in r.teardown]
    section.add("failed RPCs during the rotations", "count", harness.one(len(failures)))
    section.add("errors closing superseded streams", "count", harness.one(len(teardown)))
    section.notes.append(
        f"streams lost while the fleet first connected (before any rotation; reconnected): {lost}"
    )
    section.notes += [f"{failures.count(kind)} x {kind}" for kind in sorted(set(failures))]
    section.notes += [
        f"{teardown.count(kind)} x {kind} (after the hub's orderly close)"
        for kind in sorted(set(teardown))
    ]
    run.report.print_section(section)


def parser() -> argparse.ArgumentParser:
    p = harness.options(__doc__ or "")
    p.add_argument("--agents", type=at_least(1), default=1000)
    p.add_argument("--procs", type=at_least(1), default=4)
    p.add_argument("--repeat", type=at_least(1), default=3)
    p.add_argument(
        "--renew-only",
        action="store_true",
        help="only renew (signing throughput); do not move the streams to the new certificates",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="settle unit (s): 3x after the fleet connected, 2x after each round (default 1)",
    )
    p.add_argument("--baseline", type=float, default=2.0, help="hub heartbeat-only CPU window (s)")
    return p


if __name__ == "__main__":
    if sys.argv[1:2] == ["_worker"]:
        raise_nofile()
        asyncio.run(worker(load_spec(sys.argv[2])))
    else:
        sys.exit(harness.main(parser(), SMOKE, scenario))
