"""The replica's side of the journal: pull from the leader, notice divergence, recover.

A replica pulls from the leader the hub named, in batches bounded in entries and bytes
(the leader also bounds them), and long-polls when it is caught up. Each pull names the
replica's last durable entry and its hash: that is its acknowledgement, and the leader's
check that the two journals still agree. The leader counts it only up to what it sent on
this pull stream (named by the token in its answers, kept in journal.db so a restart keeps
it): when it answers with a lower `acknowledged_index` (the leader forgot the stream), the
replica pulls again from there, checks that what comes back is what it already holds, and
goes on. When the journals do not agree, the replica bisects over
entry hashes to find where they part (agent/journal/divergence.py), stops pulling, and reports
it; it rewinds by itself only with [replication].auto_rewind.

Recovery: `rewind` saves the divergent suffix to a forensics file (fsynced) before it
truncates, then catches up; `resync` replaces the whole journal with the leader's
snapshot, checking its chain.
"""

import asyncio
import base64
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from agent.journal.divergence import Verdict, find_divergence
from agent.journal.peer import peer_channel
from agent.journal.replication import Plan, Replication, entry_of
from agent.journal.store import ChainBroken, Entry
from agent.pki.credentials import NodeCredentials
from edgecommon.clock import stamp
from edgecommon.errors import Conflict, InvalidArgument
from edgecommon.pb import replication_pb2, replication_pb2_grpc

log = logging.getLogger("edge-agent.replica")
STRATEGIES = ("rewind", "resync")
RPC_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Recovery:
    strategy: str
    diverged_at: int
    removed: int
    forensics_file: str
    last_index: int
    detail: str
    dry_run: bool = False


def write_forensics(directory: Path, node: str, entries: Sequence[Entry], wall: float) -> Path:
    """Save entries as JSON lines, durably, before they are taken out of the journal."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    first, last = entries[0].index, entries[-1].index
    path = directory / f"divergent-{node}-{first}-{last}-{int(wall)}.jsonl"
    lines = [
        json.dumps(
            {
                "index": e.index,
                "epoch": e.epoch,
                "prev_hash": e.prev_hash.hex(),
                "hash": e.hash.hex(),
                "key": e.key,
                "payload_b64": base64.b64encode(e.payload).decode(),
                "appended_unix": e.appended_unix,
            }
        )
        for e in entries
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        os.fsync(f.fileno())
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


@dataclass(frozen=True)
class Stream:
    """The pull stream this replica follows: the leader (and epoch) that named it."""

    leader: str
    epoch: int
    token: bytes


@dataclass(frozen=True)
class ReplicaStatistics:
    following: str  # the leader whose pull stream this replica follows ("" if none)
    stream_epoch: int
    recovering: bool  # a rewind or resync is running
    resent: int  # entries the leader sent again that this replica already held
    pull_problem: str  # why the last pull failed, until one succeeds


class ReplicaLoop:
    def __init__(self, rep: Replication, creds: NodeCredentials, forensics_dir: Path) -> None:
        self.rep = rep
        self.creds = creds
        self.forensics_dir = forensics_dir
        self.config = rep.config
        self.recovering = False
        self.stream: Stream | None = None  # loaded from journal.db when the loop starts
        self.resent = 0  # entries the leader sent again, already held (counted positions)
        self._reported = ""  # the last pull failure logged (each distinct one once)

    def statistics(self) -> ReplicaStatistics:
        stream = self.stream
        return ReplicaStatistics(
            following=stream.leader if stream is not None else "",
            stream_epoch=stream.epoch if stream is not None else 0,
            recovering=self.recovering,
            resent=self.resent,
            pull_problem=self._reported,
        )

    def adopt(self, creds: NodeCredentials) -> None:
        """A renewed certificate: the next connection to the leader uses it."""
        self.creds = creds

    def _should_pull(self, plan: Plan) -> bool:
        me = self.rep.me.name
        return (
            bool(plan.leader and plan.leader_address)
            and plan.leader != me
            and not self.rep.diverged_at
            and not self.recovering
            and not self.rep.leading()
        )

    async def run(self) -> None:
        saved = await self.rep.store.pull_stream()
        if saved is not None and self.stream is None:
            self.stream = Stream(*saved)
        while True:
            plan = self.rep.plan
            if not self._should_pull(plan):
                await self.rep.wait_plan(1.0)
                continue
            try:
                await self._follow(plan)
            except grpc.aio.AioRpcError as err:
                self.rep.detail = (
                    f"cannot pull from {plan.leader} at {plan.leader_address}: "
                    f"{err.code().name} {err.details() or ''}".strip()
                )
                if self.rep.detail != self._reported:  # a refusal repeats every 0.5 s
                    self._reported = self.rep.detail
                    log.warning("%s", self.rep.detail)
                await self.rep.wait_plan(0.5)

    async def _follow(self, plan: Plan) -> None:
        rep, store, c = self.rep, self.rep.store, self.config
        resume: int | None = None  # pull again from here: the leader counts no further
        async with peer_channel(self.creds, plan.leader_address, plan.leader) as stub:
            while self._should_pull(rep.plan) and rep.plan.leader_address == plan.leader_address:
                last = store.last
                after = last.index if resume is None else resume
                digest = last.hash if resume is None else await store.hash_at(after)
                resp = await stub.Pull(
                    replication_pb2.PullRequest(
                        after_index=after,
                        after_hash=digest or b"",
                        max_entries=c.pull_max_entries
                        if resume is None
                        else max(1, min(c.pull_max_entries, last.index - after)),
                        max_bytes=c.pull_max_bytes,
                        wait_s=c.pull_wait_s if resume is None else 0.0,
                        stream_token=self._token(rep.plan),
                    ),
                    timeout=c.pull_wait_s + RPC_TIMEOUT_S,
                )
                rep.leader_last_index = resp.leader_last_index
                self._reported = ""
                if resp.status == "not_leader":
                    rep.detail = f"{plan.leader} says: {resp.detail}"
                    await rep.wait_plan(1.0)
                    return
                if resp.status == "diverged":
                    await self._diverged(stub, plan, resp.leader_last_index)
                    return
                await self._keep_stream(Stream(rep.plan.leader, rep.plan.epoch, resp.stream_token))
                entries = [entry_of(e) for e in resp.entries]
                if resp.stream_token and resp.acknowledged_index < after:
                    # (A leader of an older version names no stream and counts every claim.)
                    resume = resp.acknowledged_index  # sent again, then our position counts
                elif resume is not None:
                    resume = await self._resent(plan, entries, last.index)
                else:
                    await self._write(plan, last.index, entries)

    async def _keep_stream(self, stream: Stream) -> None:
        if stream.token and stream != self.stream:
            self.stream = stream
            await self.rep.store.save_pull_stream(stream.leader, stream.epoch, stream.token)

    def _token(self, plan: Plan) -> bytes:
        s = self.stream
        return (
            s.token if s is not None and (s.leader, s.epoch) == (plan.leader, plan.epoch) else b""
        )

    async def _resent(self, plan: Plan, entries: list[Entry], held: int) -> int | None:
        """Entries the leader sent again from a position it counts: those this journal holds
        must be the same (then they count); anything beyond is written. Returns where to
        pull again from while it has not caught up with what is held, else None."""
        if not entries:
            return None
        overlap = [e for e in entries if e.index <= held]
        if overlap and await self.rep.store.hash_at(overlap[-1].index) != overlap[-1].hash:
            return None  # the journals differ: the next pull from our last entry says where
        self.resent += len(overlap)
        if entries[-1].index < held:
            return entries[-1].index
        await self._write(plan, held, [e for e in entries if e.index > held])
        return None

    async def _write(self, plan: Plan, pulled_after: int, entries: list[Entry]) -> None:
        rep = self.rep
        async with rep.journal_lock:
            if rep.store.last.index != pulled_after:
                return  # the journal changed under the pull (recovery): pull again
            try:
                await rep.store.append_replicated(entries)
            except ChainBroken as exc:
                rep.bad_peer = f"{plan.leader} at {plan.leader_address}: {exc}"
                log.error("bad peer: %s sent entries that do not chain: %s", plan.leader, exc)
                await asyncio.sleep(1.0)
                return
        if rep.detail and entries:
            rep.detail = ""

    async def _detect(self, stub: replication_pb2_grpc.PeerStub, leader_last: int) -> Verdict:
        async def theirs(index: int) -> bytes | None:
            r = await stub.EntryHash(
                replication_pb2.EntryHashRequest(index=index), timeout=RPC_TIMEOUT_S
            )
            return r.hash if r.found else None

        store = self.rep.store
        return await find_divergence(store.last.index, leader_last, store.hash_at, theirs)

    async def _diverged(
        self, stub: replication_pb2_grpc.PeerStub, plan: Plan, leader_last: int
    ) -> None:
        verdict = await self._detect(stub, leader_last)
        if not verdict.diverged_at:
            return  # the leader moved on between the pull and the check: pull again
        last = self.rep.store.last.index
        self.rep.diverged_at = verdict.diverged_at
        self.rep.detail = (
            f"entries {verdict.diverged_at}..{last} are not on leader {plan.leader} "
            f"(last common entry {verdict.common}, found in {verdict.probes} round trips)"
        )
        log.error("journal diverged: %s", self.rep.detail)
        store = self.rep.store
        suffix = await store.read(verdict.diverged_at, last - verdict.diverged_at + 1)
        own = sorted({e.epoch for e in suffix} & store.led_epochs)
        if own and not self.config.auto_rewind:
            self.rep.detail += (
                f"; this node appended them itself as leader (epoch {', '.join(map(str, own))}):"
                " 'edgectl replica recover --strategy rewind|resync'"
            )
            return
        # Entries a former leader sent but never committed (the new leader, which holds
        # every committed entry, lacks them) are rewound like Raft followers do; they
        # still go to the forensics file first.
        report = await self.recover("rewind", dry_run=False)
        log.warning("automatic rewind: %s", report.detail)

    async def recover(self, strategy: str, dry_run: bool) -> Recovery:
        rep = self.rep
        if strategy not in STRATEGIES:
            raise InvalidArgument(f"unknown strategy {strategy!r}: use rewind or resync")
        if rep.leading():
            raise Conflict(
                f"{rep.me.name} leads group {rep.me.group}: recovery applies to replicas; move "
                f"leadership first ('edgectl leader resign --group {rep.me.group}')"
            )
        plan = rep.plan
        if not plan.leader or not plan.leader_address or plan.leader == rep.me.name:
            raise Conflict(f"no leader of group {rep.me.group} is known: nothing to recover from")
        self.recovering = True
        try:
            async with (
                peer_channel(self.creds, plan.leader_address, plan.leader) as stub,
                rep.journal_lock,
            ):
                if strategy == "rewind":
                    return await self._rewind(stub, plan, dry_run)
                return await self._resync(stub, plan, dry_run)
        except grpc.aio.AioRpcError as err:
            raise Conflict(
                f"cannot reach leader {plan.leader} at {plan.leader_address}: {err.code().name}"
            ) from None
        finally:
            self.recovering = False
            rep.plan_changed.set()

    async def _rewind(
        self, stub: replication_pb2_grpc.PeerStub, plan: Plan, dry_run: bool
    ) -> Recovery:
        rep, store = self.rep, self.rep.store
        probe = await stub.EntryHash(replication_pb2.EntryHashRequest(index=0), timeout=5)
        verdict = await self._detect(stub, probe.last_index)
        last = store.last.index
        if not verdict.diverged_at:
            raise Conflict(
                f"the journal agrees with leader {plan.leader} up to its last entry {last}: "
                "nothing to rewind"
            )
        count = last - verdict.diverged_at + 1
        if dry_run:
            return Recovery(
                "rewind",
                verdict.diverged_at,
                count,
                "",
                last,
                f"would save entries {verdict.diverged_at}..{last} and truncate to "
                f"{verdict.common}",
                True,
            )
        suffix = await store.read(verdict.diverged_at, count + 1)
        path = write_forensics(self.forensics_dir, rep.me.name, suffix, rep.clock.wall())
        removed = await store.truncate_after(verdict.common)
        rep.diverged_at, rep.bad_peer = 0, ""
        rep.detail = f"rewound at {stamp(rep.clock.wall())}: {len(removed)} entries in {path}"
        log.warning("journal rewound to %d; divergent suffix saved in %s", verdict.common, path)
        return Recovery(
            "rewind",
            verdict.diverged_at,
            len(removed),
            str(path),
            store.last.index,
            f"saved entries {verdict.diverged_at}..{last} to {path}, truncated to "
            f"{verdict.common}; catching up from {plan.leader}",
        )

    async def _resync(
        self, stub: replication_pb2_grpc.PeerStub, plan: Plan, dry_run: bool
    ) -> Recovery:
        rep, store = self.rep, self.rep.store
        before = store.last.index
        if dry_run:
            return Recovery(
                "resync",
                rep.diverged_at,
                before,
                "",
                before,
                f"would replace all {before} entries with {plan.leader}'s snapshot",
                True,
            )
        call = stub.Snapshot(replication_pb2.SnapshotRequest(), timeout=600)

        async def batches() -> AsyncIterator[list[Entry]]:
            async for chunk in call:
                yield [entry_of(e) for e in chunk.entries]

        try:
            after = await store.replace_all(batches())
        except ChainBroken as exc:
            rep.bad_peer = f"{plan.leader} at {plan.leader_address}: snapshot {exc}"
            raise Conflict(
                f"{plan.leader}'s snapshot does not chain ({exc}); the journal is unchanged"
            ) from None
        finally:
            with contextlib.suppress(Exception):
                call.cancel()
        diverged_at = rep.diverged_at
        rep.diverged_at, rep.bad_peer = 0, ""
        rep.detail = f"resynced from {plan.leader} at {stamp(rep.clock.wall())}"
        log.warning("journal resynced from %s: %d entries", plan.leader, after.index)
        return Recovery(
            "resync",
            diverged_at,
            before,
            "",
            after.index,
            f"replaced {before} entries with {after.index} from {plan.leader}'s snapshot",
        )
