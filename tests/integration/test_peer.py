"""The Peer service over real mutual TLS on loopback, with journals on real SQLite files:
who may call what, and a leader whose entries do not chain (the replica refuses them,
stores nothing and reports the peer)."""

import asyncio
import datetime as dt
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from agent.config import ReplicationSection
from agent.journal.peer import PeerService, peer_channel, start_peer_server
from agent.journal.replica import ReplicaLoop
from agent.journal.replication import Replication, entry_pb
from agent.journal.store import GENESIS, JournalStore, Position, make_entry
from agent.pki.credentials import NodeCredentials
from agent.pki.revocations import RevokedSerials
from edgecommon import pki
from edgecommon.clock import SystemClock
from edgecommon.identity import Identity, Kind
from edgecommon.pb import link_pb2, replication_pb2, replication_pb2_grpc

TD = "edge"
NO_HUB = ""  # the address a journal reports to the hub: these report to none


class Lead:
    """Leadership as the lease keeper reports it; fixed for these tests."""

    def __init__(self, leading: bool, epoch: int = 1) -> None:
        self.leading, self.epoch, self.leader = leading, epoch, ""

    def is_leader(self) -> bool:
        return self.leading


@pytest.fixture(scope="module")
def ca():  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.UTC)
    return pki.create_ca(TD, now, dt.timedelta(days=1))


def creds(ca, identity: Identity) -> NodeCredentials:  # type: ignore[no-untyped-def]
    ca_key, ca_cert = ca
    key = pki.generate_key()
    now = dt.datetime.now(dt.UTC)
    cert = pki.issue_for_key(ca_key, ca_cert, key, identity, TD, now, dt.timedelta(hours=1))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return NodeCredentials(identity, TD, key_pem, cert, [ca_cert])


async def open_store(path: Path) -> JournalStore:
    store = JournalStore(path, SystemClock().wall)
    await store.open()
    return store


async def test_only_members_of_the_group_pull_and_only_the_hub_appends(ca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    leader = creds(ca, Identity(Kind.NODE, "n1", "g"))
    store = await open_store(tmp_path / "j.db")
    config = ReplicationSection()
    rep = Replication(
        store, config, leader.identity, Lead(True), SystemClock(), RevokedSerials(), NO_HUB
    )
    rep.set_plan(link_pb2.ReplicationPlan(group="g", leader="n1", epoch=1, min_sync=0))
    server, port, _ = await start_peer_server(rep, leader, SystemClock(), "127.0.0.1:0")
    address = f"127.0.0.1:{port}"
    try:
        member = creds(ca, Identity(Kind.NODE, "n2", "g"))
        stranger = creds(ca, Identity(Kind.NODE, "x1", "other"))
        operator = creds(ca, Identity(Kind.OPERATOR, "alice"))
        hub = creds(ca, Identity(Kind.HUB, "hub"))
        async with peer_channel(member, address, "n1") as stub:
            ok = await stub.Pull(
                replication_pb2.PullRequest(after_index=0, after_hash=GENESIS.hash), timeout=5
            )
            assert ok.status == "ok"
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.Append(replication_pb2.AppendRequest(key="k", value=b"v"), timeout=5)
            assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
        async with peer_channel(stranger, address, "n1") as stub:
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.Pull(replication_pb2.PullRequest(), timeout=5)
            assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert "not a member of group g" in (denied.value.details() or "")
        async with peer_channel(operator, address, "n1") as stub:
            with pytest.raises(grpc.aio.AioRpcError) as direct:
                await stub.Append(replication_pb2.AppendRequest(key="k", value=b"v"), timeout=5)
            assert direct.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert "operators append through the hub" in (direct.value.details() or "")
        async with peer_channel(hub, address, "n1") as stub:
            done = await stub.Append(replication_pb2.AppendRequest(key="k", value=b"v"), timeout=5)
            assert done.index == 1
            with pytest.raises(grpc.aio.AioRpcError) as big:
                await stub.Append(
                    replication_pb2.AppendRequest(key="k", value=b"x" * 70_000), timeout=5
                )
            assert big.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "max_payload_bytes" in (big.value.details() or "")
        async with peer_channel(member, address, "n9") as stub:
            with pytest.raises(grpc.aio.AioRpcError) as wrong:
                await stub.EntryHash(replication_pb2.EntryHashRequest(index=1), timeout=5)
            assert wrong.value.code() is grpc.StatusCode.UNAVAILABLE  # not the node named
        assert store.last.index == 1
    finally:
        await server.stop(None)
        await store.close()


class TamperingLeader(PeerService):
    """A leader whose third entry's payload was changed after hashing."""

    def __init__(self, entries) -> None:  # type: ignore[no-untyped-def]
        self.entries = entries

    async def Pull(self, request, context):  # type: ignore[no-untyped-def]
        picked = [e for e in self.entries if e.index > request.after_index][:100]
        return replication_pb2.PullResponse(
            status="ok", entries=[entry_pb(e) for e in picked], leader_last_index=5
        )


async def test_a_leader_sending_entries_that_do_not_chain_is_refused_and_reported(
    ca, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    leader = creds(ca, Identity(Kind.NODE, "n1", "g"))
    replica = creds(ca, Identity(Kind.NODE, "n2", "g"))
    entries, last = [], GENESIS
    for i in range(5):
        e = make_entry(last, 1, "k", f"v{i}".encode(), 0.0)
        entries.append(e)
        last = Position(e.index, e.epoch, e.hash)
    entries[2] = replace(entries[2], payload=b"tampered")
    server = grpc.aio.server()
    replication_pb2_grpc.add_PeerServicer_to_server(TamperingLeader(entries), server)
    port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials(
            [(leader.key_pem, leader.cert_pem)],
            root_certificates=leader.bundle_pem,
            require_client_auth=True,
        ),
    )
    await server.start()
    store = await open_store(tmp_path / "replica.db")
    rep = Replication(
        store,
        ReplicationSection(),
        replica.identity,
        Lead(False),
        SystemClock(),
        RevokedSerials(),
        NO_HUB,
    )
    rep.set_plan(
        link_pb2.ReplicationPlan(
            group="g", leader="n1", leader_peer_address=f"127.0.0.1:{port}", epoch=1, min_sync=1
        )
    )
    loop = ReplicaLoop(rep, replica, tmp_path / "forensics")
    task = asyncio.create_task(loop.run())
    try:
        for _ in range(100):
            if rep.bad_peer:
                break
            await asyncio.sleep(0.05)
        assert "n1" in rep.bad_peer
        assert "entry 3's hash does not match" in rep.bad_peer
        assert store.last.index == 0  # the whole batch was refused
        report = await rep.journal_report()
        assert report.bad_peer == rep.bad_peer
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await server.stop(None)
        await store.close()


async def _follow_until(rep: Replication, loop: ReplicaLoop, done) -> None:  # type: ignore[no-untyped-def]
    task = asyncio.create_task(loop.run())
    try:
        for _ in range(200):
            if done():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"replica never got there: {rep.detail}")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("own_writes", [False, True])
async def test_a_replica_rewinds_by_itself_only_what_it_did_not_write(
    ca, tmp_path: Path, own_writes: bool
) -> None:  # type: ignore[no-untyped-def]
    leader = creds(ca, Identity(Kind.NODE, "n1", "g"))
    replica = creds(ca, Identity(Kind.NODE, "n2", "g"))
    lstore = await open_store(tmp_path / "leader.db")
    rstore = await open_store(tmp_path / "replica.db")
    shared = []
    last = GENESIS
    for i in range(3):
        e = make_entry(last, 1, "k", f"v{i}".encode(), 0.0)
        shared.append(e)
        last = Position(e.index, e.epoch, e.hash)
    await lstore.append_replicated(shared)
    await rstore.append_replicated(shared)
    if own_writes:
        await rstore.append("k", b"mine, as leader of epoch 2", 2)
    else:
        stale = make_entry(last, 2, "k", b"from a former leader", 0.0)
        await rstore.append_replicated([stale])
    await lstore.append("k", b"the new leader's", 3)
    lrep = Replication(
        lstore,
        ReplicationSection(),
        leader.identity,
        Lead(True, 3),
        SystemClock(),
        RevokedSerials(),
        NO_HUB,
    )
    lrep.set_plan(link_pb2.ReplicationPlan(group="g", leader="n1", epoch=3, min_sync=0))
    server, port, _ = await start_peer_server(lrep, leader, SystemClock(), "127.0.0.1:0")
    rrep = Replication(
        rstore,
        ReplicationSection(),
        replica.identity,
        Lead(False),
        SystemClock(),
        RevokedSerials(),
        NO_HUB,
    )
    rrep.set_plan(
        link_pb2.ReplicationPlan(
            group="g", leader="n1", leader_peer_address=f"127.0.0.1:{port}", epoch=3, min_sync=0
        )
    )
    loop = ReplicaLoop(rrep, replica, tmp_path / "forensics")
    try:
        if own_writes:
            await _follow_until(rrep, loop, lambda: rrep.diverged_at == 4)
            assert "appended them itself" in rrep.detail
            assert rstore.last.index == 4
            assert not (tmp_path / "forensics").exists()
        else:
            await _follow_until(rrep, loop, lambda: rstore.last.hash == lstore.last.hash)
            assert rrep.diverged_at == 0
            saved = list((tmp_path / "forensics").iterdir())
            assert len(saved) == 1
            assert "from a former leader" not in saved[0].read_text()  # payload is base64
            assert '"index": 4' in saved[0].read_text()
    finally:
        await server.stop(None)
        await lstore.close()
        await rstore.close()


async def _pull(stub, store: JournalStore, token: bytes = b"", wait_s: float = 0.0):  # type: ignore[no-untyped-def]
    last = store.last
    return await stub.Pull(
        replication_pb2.PullRequest(
            after_index=last.index, after_hash=last.hash, wait_s=wait_s, stream_token=token
        ),
        timeout=5,
    )


async def test_inv_repl_01_a_restarted_replica_is_sent_again_what_it_holds_then_counts(
    ca, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Entries appended under this leadership count for a replica only once sent on its
    pull stream: a replica process that lost its stream (restarted) claims them, the leader
    counts the start of its leadership, sends them again, the replica finds them equal to
    what it holds (nothing written twice) and then its whole position counts."""
    leader = creds(ca, Identity(Kind.NODE, "n1", "g"))
    replica = creds(ca, Identity(Kind.NODE, "n2", "g"))
    lstore = await open_store(tmp_path / "leader.db")
    rstore = await open_store(tmp_path / "replica.db")
    lrep = Replication(
        lstore,
        ReplicationSection(),
        leader.identity,
        Lead(True, 3),
        SystemClock(),
        RevokedSerials(),
        NO_HUB,
    )
    lrep.set_plan(link_pb2.ReplicationPlan(group="g", leader="n1", epoch=3, min_sync=0))
    assert lrep.leading()  # the leadership begins with an empty journal
    for i in range(7):
        await lrep.append("k", f"v{i}".encode())
    await rstore.append_replicated(await lstore.read(1, 100))  # pulled by an earlier process
    server, port, _ = await start_peer_server(lrep, leader, SystemClock(), "127.0.0.1:0")
    address = f"127.0.0.1:{port}"
    rrep = Replication(
        rstore,
        ReplicationSection(),
        replica.identity,
        Lead(False),
        SystemClock(),
        RevokedSerials(),
        NO_HUB,
    )
    rrep.set_plan(
        link_pb2.ReplicationPlan(
            group="g", leader="n1", leader_peer_address=address, epoch=3, min_sync=0
        )
    )
    try:
        async with peer_channel(replica, address, "n1") as stub:
            first = await _pull(stub, rstore)
            assert first.acknowledged_index == 0  # never sent on this (new) stream
            assert not first.entries
            assert lrep.progress["n2"].durable == 0
        loop = ReplicaLoop(rrep, replica, tmp_path / "forensics")
        await _follow_until(
            rrep,
            loop,
            lambda: lrep.progress.get("n2", None) is not None and lrep.progress["n2"].durable == 7,
        )
        assert loop.resent == 7
        assert [e.hash for e in await rstore.read(1, 100)] == [
            e.hash for e in await lstore.read(1, 100)
        ]
        # The stream is kept in journal.db: the next process names it and counts at once.
        await lrep.append("k", b"v7")
        again = ReplicaLoop(rrep, replica, tmp_path / "forensics")
        await _follow_until(
            rrep, again, lambda: "n2" in lrep.progress and lrep.progress["n2"].durable == 8
        )
        assert again.resent == 0
    finally:
        await server.stop(None)
        await lstore.close()
        await rstore.close()


async def test_inv_repl_01_only_current_members_with_unrevoked_certificates_count(
    ca, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    leader = creds(ca, Identity(Kind.NODE, "n1", "g"))
    member = creds(ca, Identity(Kind.NODE, "n2", "g"))
    outsider = creds(ca, Identity(Kind.NODE, "n3", "g"))  # of the group, not in the sync set
    store = await open_store(tmp_path / "leader.db")
    revoked = RevokedSerials()
    rep = Replication(
        store, ReplicationSection(), leader.identity, Lead(True), SystemClock(), revoked, NO_HUB
    )
    rep.set_plan(
        link_pb2.ReplicationPlan(group="g", leader="n1", epoch=1, min_sync=1, joining=["n2"])
    )
    server, port, service = await start_peer_server(rep, leader, SystemClock(), "127.0.0.1:0")
    address = f"127.0.0.1:{port}"
    try:
        async with (
            peer_channel(member, address, "n1") as m,
            peer_channel(outsider, address, "n1") as o,
        ):
            mine = await _pull(m, store)
            await _pull(o, store)
            assert rep.durable() == {"n2": 0}  # n3 is heard from, but does not count
            assert set(rep.progress) == {"n2", "n3"}
            waiting = asyncio.ensure_future(_pull(m, store, mine.stream_token, wait_s=5.0))
            await asyncio.sleep(0.3)
            await revoked.replace([pki.serial_hex(member.cert)])
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await waiting
            assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert "revoked" in (ended.value.details() or "")
            assert rep.durable() == {}  # what it acknowledged no longer counts
            for call in (
                lambda: _pull(m, store),
                lambda: m.EntryHash(replication_pb2.EntryHashRequest(index=0), timeout=5),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call()
                assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert service.statistics().refused_revoked == 2
            assert service.statistics().ended_by_revocation == 1
            assert (await _pull(o, store)).status == "ok"  # others are unaffected
    finally:
        await server.stop(None)
        await store.close()
