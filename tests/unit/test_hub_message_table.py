"""The agent's table of hub message kinds -> handlers: every kind the proto defines has
exactly one handler (or is the link's own), so a kind added to HubMessage without a handler
fails here, and the agent refuses to start with an incomplete table."""

import datetime as dt
from pathlib import Path

import pytest

from agent.assemble import hub_handlers
from agent.config import AgentConfig, ReplicationSection, SafetySection
from agent.journal.replication import Replication
from agent.journal.store import JournalStore
from agent.leases.keeper import LeaseKeeper
from agent.link.hub_messages import LINK_KINDS, Handlers, Reply
from agent.pki.credentials import NodeCredentials
from agent.pki.revocations import RevokedSerials
from agent.safety.permits import PermitTable
from agent.safety.runner import Safety
from agent.state_db import AgentStateDB
from edgecommon import pki
from edgecommon.autonomy_file import SwitchFile
from edgecommon.identity import Identity, Kind
from edgecommon.pb import link_pb2
from tests.audit_support import FakeClock

# Read from the proto itself, not from agent.link.hub_messages.
PROTO_KINDS = {field.name for field in link_pb2.HubMessage.DESCRIPTOR.oneofs_by_name["body"].fields}


def node_credentials() -> NodeCredentials:
    now = dt.datetime.now(dt.UTC)
    ca_key, ca = pki.create_ca("edge", now, dt.timedelta(days=1))
    identity = Identity(Kind.NODE, "n1", "g")
    key = pki.generate_key()
    cert = pki.issue_for_key(ca_key, ca, key, identity, "edge", now, dt.timedelta(hours=1))
    return NodeCredentials(identity, "edge", pki.private_key_bytes(key), cert, [ca])


def the_agents_table(tmp_path: Path) -> Handlers:
    """The table agent.assemble builds, from the real subsystems (nothing opened)."""
    clock, creds = FakeClock(), node_credentials()
    safety = Safety(
        AgentStateDB(tmp_path / "agent.db"),
        SwitchFile(tmp_path / "autonomy.yaml", True),
        clock,
        SafetySection(),
        PermitTable(),
        10.0,
        lambda: None,
    )
    keeper = LeaseKeeper(AgentConfig(), creds, clock, safety.stepped_down)
    revoked = RevokedSerials()
    journal = JournalStore(tmp_path / "journal.db", clock.wall)
    rep = Replication(journal, ReplicationSection(), creds.identity, keeper, clock, revoked, "")
    return hub_handlers(safety, keeper, rep, revoked)


def test_every_hub_message_kind_has_a_handler_in_the_agents_table(tmp_path: Path) -> None:
    handled = the_agents_table(tmp_path).kinds()
    assert LINK_KINDS <= PROTO_KINDS
    assert not handled & LINK_KINDS, "the link's own kinds are not handed out"
    assert handled | LINK_KINDS == PROTO_KINDS, (
        f"no handler for {sorted(PROTO_KINDS - handled - LINK_KINDS)}"
    )


async def ignore(body: object, reply: Reply) -> None:
    pass


def test_an_incomplete_or_ambiguous_table_is_refused_when_it_is_built() -> None:
    every = dict.fromkeys(PROTO_KINDS - LINK_KINDS, ignore)
    assert Handlers([every]).kinds() == PROTO_KINDS - LINK_KINDS
    missing = {k: v for k, v in every.items() if k != "estop"}
    with pytest.raises(TypeError, match="no handler for: estop"):
        Handlers([missing])
    with pytest.raises(TypeError, match="not a kind: telemetry"):
        Handlers([every, {"telemetry": ignore}])
    with pytest.raises(TypeError, match="not a kind: backoff"):  # the link's own
        Handlers([every, {"backoff": ignore}])
    with pytest.raises(TypeError, match="two handlers for hub message kind 'estop'"):
        Handlers([every, {"estop": ignore}])


async def test_the_table_hands_each_message_its_body_and_a_reply(tmp_path: Path) -> None:
    seen: list[tuple[str, object]] = []
    replies: list[link_pb2.AgentMessage] = []

    async def nudged(body: link_pb2.LeaseNudge, reply: Reply) -> None:
        seen.append(("lease_nudge", body.reason))
        reply(link_pb2.AgentMessage(heartbeat=link_pb2.Heartbeat(seq=7)))

    every = dict.fromkeys(PROTO_KINDS - LINK_KINDS, ignore)
    handlers = Handlers([{**every, "lease_nudge": nudged}])
    message = link_pb2.HubMessage(lease_nudge=link_pb2.LeaseNudge(reason="switchover"))
    await handlers.handle("lease_nudge", message, replies.append)
    assert seen == [("lease_nudge", "switchover")]
    assert [r.heartbeat.seq for r in replies] == [7]
