"""The agent's assembly (agent.assemble) on a real state directory: the local parts serve
before the node is enrolled and read what needs its certificate through one owner; the
node's parts take every collaborator at construction, the Peer server's bound port is the
address the journal reports, and a new certificate reaches every part that uses one."""

import datetime as dt
import random
from pathlib import Path

import pytest

from agent.assemble import build_local, build_node
from agent.config import AgentConfig, AgentSection, SafetySection
from agent.journal.store import JournalStore
from agent.link.hub_messages import HUB_MESSAGE_KINDS, LINK_KINDS
from agent.pki import credentials
from agent.state_db import AgentStateDB
from edgecommon import pki
from edgecommon.clock import SystemClock
from edgecommon.identity import Identity, Kind

IDENTITY = Identity(Kind.NODE, "n1", "site-a")


@pytest.fixture
async def state(tmp_path: Path):  # type: ignore[no-untyped-def]
    """An enrolled node's state directory (certificate on disk), agent.db and journal open."""
    now = dt.datetime.now(dt.UTC)
    ca_key, ca = pki.create_ca("edge", now, dt.timedelta(days=1))

    def issue() -> None:
        key = pki.generate_key()
        cert = pki.issue_for_key(ca_key, ca, key, IDENTITY, "edge", now, dt.timedelta(hours=2))
        credentials.save(paths, key, pki.pem(cert), pki.pem(ca))

    paths = credentials.CredentialPaths.under(tmp_path)
    issue()
    db = AgentStateDB(tmp_path / "agent.db")
    journal = JournalStore(tmp_path / "journal.db", SystemClock().wall)
    await db.open()
    await journal.open()
    config = AgentConfig(
        agent=AgentSection(state_dir=tmp_path),
        safety=SafetySection(node_switch_file=tmp_path / "autonomy.yaml"),
    )
    try:
        yield config, db, journal, paths, issue
    finally:
        await journal.close()
        await db.close()


async def test_the_node_is_built_whole_and_published_once(state) -> None:  # type: ignore[no-untyped-def]
    config, db, journal, _paths, _ = state
    clock = SystemClock()
    local = await build_local(config, clock, db, journal)
    stored = local.enrolled.credentials()
    assert stored is not None
    assert stored.identity == IDENTITY
    assert local.join_token == ""
    # Before the node's parts exist: no lease, no journal to read.
    assert local.enrolled.leadership() is None
    assert local.enrolled.journal() is None

    node = build_node(config, clock, random.Random(1), local, journal, stored)
    try:
        assert node.link.handlers.kinds() | LINK_KINDS == HUB_MESSAGE_KINDS
        host, _, port = node.replication.peer_address.rpartition(":")
        assert host == "127.0.0.1"
        assert int(port) > 0
        local.enrolled.publish(node.enrolled())
        assert local.enrolled.leadership() is node.keeper
        assert local.enrolled.journal() == node.enrolled().journal
        with pytest.raises(RuntimeError):
            local.enrolled.publish(node.enrolled())
    finally:
        await node.peer_server.stop(None)


async def test_a_new_certificate_reaches_every_part_that_uses_one(state) -> None:  # type: ignore[no-untyped-def]
    config, db, journal, paths, issue = state
    clock = SystemClock()
    local = await build_local(config, clock, db, journal)
    node = build_node(config, clock, random.Random(1), local, journal, local.enrolled.credentials())
    local.enrolled.publish(node.enrolled())
    try:
        issue()  # a renewal's result, on disk
        renewed = credentials.load(paths)
        await node.renewer.adopt(renewed)  # no stream is open: the link takes it at once
        users = {
            "local API": local.enrolled.credentials(),
            "renewal": node.renewer.creds,
            "lease": node.keeper.creds,
            "replica": node.replica.creds,
            "Peer service": node.peer.creds,
            "hub link": node.link.creds,
        }
        assert {name: c.cert for name, c in users.items()} == dict.fromkeys(users, renewed.cert)
    finally:
        await node.peer_server.stop(None)
