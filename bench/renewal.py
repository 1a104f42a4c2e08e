"""Benchmark fleet-wide certificate renewal against a real hub.

    .venv/bin/python bench/renewal.py [--agents 1000] [--procs 4] [--repeat 3] [--json]

A real hub process (`python -m hub.main`) and N simulated agents spread over P worker
processes (started with subprocess, never forked after importing grpc). Each simulated
agent has its own node certificate (signed here with the hub's CA instead of N
enrollments), its own channel (grpc.use_local_subchannel_pool=1, so its own mTLS
connection) and an open Link.Connect stream with a heartbeat every second.

Each round, all N agents renew at once, the way edge-agent does: a new key, a CSR over
the open mTLS connection (Certs.Renew), then a new channel with the new certificate, a
new stream registered on it, and the old stream let go once the hub ends it (handover;
no drop). Heartbeats keep flowing the whole time. Reported per round: time until all N
were renewed (signatures answered) and until all N streams moved, hub signatures per
second, hub CPU seconds, per-agent renewal latency (median/p99/max), and every RPC that
failed: renewals, registrations on the new stream, heartbeats, and old streams that
ended with an error instead of the hub's orderly close. Across rounds: median / p99 /
max. Loopback only; every child is stopped and the temporary directory removed at the
end (--keep keeps it).
"""

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil

from edgecommon import grpcopts, pki
from edgecommon.identity import Identity, Kind
from edgecommon.pb import certs_pb2, certs_pb2_grpc, link_pb2, link_pb2_grpc
from hub.credentials import CredentialPaths, load_ca

ROOT = Path(__file__).resolve().parent.parent
GROUP = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.3f} / {pct(values, 0.99):.3f} / {max(values):.3f}"


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


async def worker(spec_path: Path, index: int) -> None:
    spec = json.loads(spec_path.read_text())
    certs = Path(spec["certs"])
    names = spec["names"][index :: spec["procs"]]
    bundle = (certs / "ca.crt").read_bytes()
    agents = [
        SimAgent(
            n,
            (certs / f"{n}.key").read_bytes(),
            (certs / f"{n}.crt").read_bytes(),
            bundle,
            spec["target"],
        )
        for n in names
    ]

    async def connect(agent: SimAgent) -> None:
        for attempt in range(20):
            try:
                agent.stream = await agent.open()
                return
            except (grpc.aio.AioRpcError, RuntimeError, TimeoutError):
                await asyncio.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"{agent.name} could not connect")

    await asyncio.gather(*(connect(a) for a in agents))
    beats = [asyncio.create_task(a.heartbeats()) for a in agents]
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await asyncio.sleep(3.0)  # let a connect storm settle; streams lost in it reconnect
    lost = sum(len(a.failures) for a in agents)
    for _ in range(300):
        if all(a.stream is not None for a in agents):
            break
        await asyncio.sleep(0.1)
    print(json.dumps({"ready": len(agents), "lost_while_connecting": lost}), flush=True)
    while (await reader.readline()).strip() == b"go":
        go = time.time()
        before = [len(a.failures) for a in agents]
        torn = [len(a.teardown) for a in agents]
        results = await asyncio.gather(*(a.rotate(spec["move"]) for a in agents))
        await asyncio.sleep(2.0)  # heartbeats on the new streams, old streams closed
        failures = [f for a, n in zip(agents, before, strict=True) for f in a.failures[n:]]
        teardown = [f for a, n in zip(agents, torn, strict=True) for f in a.teardown[n:]]
        print(
            json.dumps(
                {
                    "go": go,
                    "signed": [s - go for s, _ in results],
                    "moved": [m - go for _, m in results],
                    "failures": failures,
                    "teardown": teardown,
                }
            ),
            flush=True,
        )
    for task in beats:
        task.cancel()
    for agent in agents:
        if agent.stream is not None:
            agent.stream.call.cancel()
            await agent.stream.channel.close()


# --- driver --------------------------------------------------------------------------------


def write_certificates(hub_state: Path, directory: Path, names: list[str]) -> None:
    ca_key, ca_cert = load_ca(CredentialPaths.under(hub_state))
    now = dt.datetime.now(dt.UTC)
    directory.mkdir()
    pki.write_certificates(directory / "ca.crt", [ca_cert])
    for name in names:
        key = pki.generate_key()
        cert = pki.issue_for_key(
            ca_key,
            ca_cert,
            key,
            Identity(Kind.NODE, name, GROUP),
            "edge",
            now,
            dt.timedelta(hours=72),
        )
        pki.write_private_key(directory / f"{name}.key", key)
        pki.write_certificates(directory / f"{name}.crt", [cert])


def wait_for(what: str, check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    listen = f"127.0.0.1:{free_port()}"
    state = tmp / "hub-state"
    (tmp / "hub.toml").write_text(
        f'[hub]\nstate_dir = "{state}"\nlisten = "{listen}"\n'
        f'enroll_listen = "127.0.0.1:{free_port()}"\nlog_level = "warning"\n'
        f'[http]\nlisten = ""\n[autonomy]\nfile = "{tmp / "autonomy.yaml"}"\n'
        "[link]\nmax_registrations_per_s = 100000\nregistration_burst = 100000\n"
        "offline_after_s = 30\n"
    )
    procs: list[subprocess.Popen[bytes]] = []
    hub_log = (tmp / "hub.log").open("wb")
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub.main", "--config", str(tmp / "hub.toml")],
        stdout=hub_log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    procs.append(hub)
    try:
        wait_for("the hub's CA", lambda: (state / "pki" / "hub.crt").exists(), 30)
        time.sleep(0.5)
        names = [f"node-{i:05d}" for i in range(args.agents)]
        write_certificates(state, tmp / "certs", names)
        spec = {
            "certs": str(tmp / "certs"),
            "names": names,
            "procs": args.procs,
            "target": listen,
            "move": not args.renew_only,
        }
        (tmp / "spec.json").write_text(json.dumps(spec))
        workers = []
        for i in range(args.procs):
            w = subprocess.Popen(
                [sys.executable, __file__, "--worker", str(tmp / "spec.json"), "--index", str(i)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=(tmp / f"worker-{i}.log").open("wb"),
                cwd=ROOT,
            )
            procs.append(w)
            workers.append(w)
        lost_while_connecting = 0
        for w in workers:
            line = w.stdout.readline() if w.stdout else b""
            if not line:
                raise RuntimeError(f"a worker died before it was ready; see {tmp}/worker-*.log")
            lost_while_connecting += json.loads(line)["lost_while_connecting"]
        hub_ps = psutil.Process(hub.pid)
        rounds = []
        for _ in range(args.repeat):
            # Baseline: the hub's CPU for heartbeats alone, subtracted from the round's.
            idle0, t0 = sum(hub_ps.cpu_times()[:2]), time.monotonic()
            time.sleep(2.0)
            idle_rate = (sum(hub_ps.cpu_times()[:2]) - idle0) / (time.monotonic() - t0)
            cpu0, started = sum(hub_ps.cpu_times()[:2]), time.monotonic()
            for w in workers:
                if w.stdin is not None:
                    w.stdin.write(b"go\n")
                    w.stdin.flush()
            results = [json.loads(w.stdout.readline()) for w in workers if w.stdout]
            cpu = sum(hub_ps.cpu_times()[:2]) - cpu0
            extra_cpu = cpu - idle_rate * (time.monotonic() - started)
            go = min(r["go"] for r in results)
            signed = [r["go"] - go + s for r in results for s in r["signed"] if s == s]
            moved = [r["go"] - go + m for r in results for m in r["moved"] if m == m]
            failures = [f for r in results for f in r["failures"]]
            teardown = [f for r in results for f in r["teardown"]]
            rounds.append(
                {
                    "renewed": len(signed),
                    "all_signed_s": max(signed) if signed else float("nan"),
                    "all_moved_s": max(moved) if moved else float("nan"),
                    "signatures_per_s": len(signed) / max(signed) if signed else 0.0,
                    "hub_cpu_s": cpu,
                    "hub_cpu_ms_per_agent": 1000 * extra_cpu / max(len(signed), 1),
                    "latency": signed,
                    "failures": failures,
                    "teardown": teardown,
                }
            )
        for w in workers:
            if w.stdin:
                w.stdin.close()
        for w in workers:
            w.wait(30)
        return {
            "agents": args.agents,
            "procs": args.procs,
            "rounds": rounds,
            "lost_while_connecting": lost_while_connecting,
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
            if p.poll() is None:
                p.kill()
        hub_log.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--renew-only",
        action="store_true",
        help="only renew (signing throughput); do not move the streams to the new certificates",
    )
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.worker, args.index))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="renewal-bench-"))
    try:
        result = run(args, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rounds = result["rounds"]
    load = os.getloadavg()
    print(
        f"renewal{' (renew only)' if args.renew_only else ''}: {result['agents']} agents in "
        f"{result['procs']} workers, {len(rounds)} round(s); "
        f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print("per round, median / p99 / max across rounds:")
    print(f"  all renewed (s)          {summary([r['all_signed_s'] for r in rounds])}")
    print(f"  all streams moved (s)    {summary([r['all_moved_s'] for r in rounds])}")
    print(f"  hub signatures/s         {summary([r['signatures_per_s'] for r in rounds])}")
    print(f"  hub CPU per round (s)    {summary([r['hub_cpu_s'] for r in rounds])}")
    print(
        "  hub CPU per agent (ms)   "
        f"{summary([r['hub_cpu_ms_per_agent'] for r in rounds])}  (heartbeat baseline removed)"
    )
    print(f"  renewed per round        {summary([float(r['renewed']) for r in rounds])}")
    latency = [x for r in rounds for x in r["latency"]]
    print(f"per agent renewal latency (s), all rounds: {summary(latency)}")
    print(
        "streams lost while the fleet first connected (before any rotation; reconnected): "
        f"{result['lost_while_connecting']}"
    )
    failures = [f for r in rounds for f in r["failures"]]
    print(f"failed RPCs during the rotations: {len(failures)}")
    for kind in sorted(set(failures)):
        print(f"  {failures.count(kind)} x {kind}")
    teardown = [f for r in rounds for f in r["teardown"]]
    print(f"errors closing superseded streams (after the hub's orderly close): {len(teardown)}")
    for kind in sorted(set(teardown)):
        print(f"  {teardown.count(kind)} x {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
