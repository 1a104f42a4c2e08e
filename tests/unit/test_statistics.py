"""The statistics format (edgecommon/statistics.py) and its documentation: every field of
every section's snapshot is in docs/statistics.md, under its section, and nothing else is."""

import dataclasses
import re
import typing
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from agent.journal.peer import PeerStatistics
from agent.journal.replica import ReplicaStatistics
from agent.journal.replication import ReplicationStatistics as JournalReplicationStatistics
from agent.journal.store import JournalStatistics
from agent.leases.keeper import LeadershipStatistics
from agent.link.hub_link import HubLinkStatistics
from agent.link.status import AGENT_SECTIONS
from agent.local.gate import LocalGateStatistics
from agent.local.relay import RelayStatistics
from agent.pki.renewal import RenewalStatistics
from agent.safety.runner import SafetyStatistics
from edgecommon.boundary import BoundaryStatistics
from edgecommon.statistics import StatisticsBoard, brief, lines, parse, plain, shown
from hub.assemble import HUB_SECTIONS
from hub.fleet.link_service import LinkStatistics
from hub.fleet.registry import RegistryStatistics
from hub.journal.leader_channels import LeaderChannelStatistics
from hub.journal.replication import ReplicationStatistics
from hub.leases.manager import LeaseStatistics
from hub.rbac.gate import GateStatistics
from hub.stops.autonomy import FleetSwitchStatistics
from hub.stops.estop import EstopStatistics

DOC = Path(__file__).resolve().parents[2] / "docs" / "statistics.md"
AGENT = {
    "safety": SafetyStatistics,
    "link": HubLinkStatistics,
    "leadership": LeadershipStatistics,
    "journal": JournalStatistics,
    "replication": JournalReplicationStatistics,
    "replica": ReplicaStatistics,
    "peer": PeerStatistics,
    "renewal": RenewalStatistics,
    "local_gate": LocalGateStatistics,
    "local_relay": RelayStatistics,
    "local_boundary": BoundaryStatistics,
}
HUB = {
    "registry": RegistryStatistics,
    "link": LinkStatistics,
    "estops": EstopStatistics,
    "autonomy": FleetSwitchStatistics,
    "leases": LeaseStatistics,
    "replication": ReplicationStatistics,
    "leader_channels": LeaderChannelStatistics,
    "gate": GateStatistics,
    "boundary": BoundaryStatistics,
}


class Color(StrEnum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Inner:
    seen_unix: float
    count: int


@dataclasses.dataclass(frozen=True)
class Outer:
    state: Color
    by: dict[Color, int]
    items: tuple[Inner, ...]
    inner: Inner
    tags: frozenset[str]


class Counted:
    def __init__(self) -> None:
        self.n = 0

    def statistics(self) -> Inner:
        return Inner(0.0, self.n)


def test_plain_turns_a_snapshot_into_json_ready_data() -> None:
    snapshot = Outer(Color.RED, {Color.RED: 2}, (Inner(1.0, 1),), Inner(0.0, 0), frozenset("ba"))
    assert plain(snapshot) == {
        "state": "red",
        "by": {"red": 2},
        "items": [{"seen_unix": 1.0, "count": 1}],
        "inner": {"seen_unix": 0.0, "count": 0},
        "tags": ["a", "b"],
    }
    assert type(plain(snapshot)["state"]) is str


def test_a_board_keeps_its_sections_in_order_and_reads_them_when_asked() -> None:
    counted = Counted()
    board = StatisticsBoard(("first", "second"))
    assert board.snapshot() == {"first": None, "second": None}
    board.attach("second", counted)
    counted.n = 3
    assert list(board.snapshot().items()) == [
        ("first", None),
        ("second", {"seen_unix": 0.0, "count": 3}),
    ]
    assert parse(board.json()) == board.snapshot()
    with pytest.raises(ValueError, match="no statistics section 'third'"):
        board.attach("third", counted)


def test_people_see_states_and_counters_that_are_not_zero_and_iso_times() -> None:
    section = {
        "state": "connected",
        "since_unix": 1.7e9,
        "connects": 2,
        "backoffs": 0,
        "credential_problem": False,
        "link_up": True,
        "ratio": 0.123456,
        "expires_in_s": 259193.6,
        "by_reason": {"a": 1},
        "last_error": "",
    }
    assert brief(section) == (
        "state connected, connects 2, link_up, ratio 0.123, expires_in_s 259194"
    )
    assert brief({"a": 0}) == "-"
    assert brief({f"k{i}": 1 for i in range(10)}, limit=2) == "k0 1, k1 1, ..."
    assert lines({"x": None, "y": {"n": 1}}) == [("  x", "not running"), ("  y", "n 1")]
    assert shown({"s": {"since_unix": 0.0, "at_unix": 86400, "n": [{"t_unix": 0}]}}) == {
        "s": {"since": None, "at": "1970-01-02T00:00:00Z", "n": [{"t": None}]}
    }
    assert parse("") == {}


def documented(heading: str) -> dict[str, set[str]]:
    """Per section: the fields in the tables under `heading` (a `## ` title)."""
    text = DOC.read_text().split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    out: dict[str, set[str]] = {}
    for part in re.split(r"\n### ", text)[1:]:
        names = re.findall(r"`([a-z_]+)`", part.split("\n", 1)[0].split("—")[0])
        rows = set(re.findall(r"^\| `([a-z_.\[\]]+)` \|", part, re.MULTILINE))
        for name in names:
            prefix = f"{name}." if len(names) > 1 else ""
            out[name] = {r.removeprefix(prefix) for r in rows if r.startswith(prefix)}
    return out


def fields(cls: type) -> set[str]:
    """The keys edgectl shows for a snapshot type, nested ones dotted."""
    out = set()
    for name, hint in typing.get_type_hints(cls).items():
        shown_name = name.removesuffix("_unix")
        args = typing.get_args(hint)
        if dataclasses.is_dataclass(hint):
            out |= {f"{shown_name}.{f}" for f in fields(hint)}  # type: ignore[arg-type]
        elif typing.get_origin(hint) is tuple and args and dataclasses.is_dataclass(args[0]):
            out |= {f"{shown_name}[].{f}" for f in fields(args[0])}  # type: ignore[arg-type]
        else:
            out.add(shown_name)
    return out


@pytest.mark.parametrize(
    ("heading", "sections", "types"),
    [
        ("The agent (`edgectl status`)", AGENT_SECTIONS, AGENT),
        ("The hub (`edgectl fleet status`)", HUB_SECTIONS, HUB),
    ],
)
def test_every_statistics_field_is_documented_under_its_section(
    heading: str, sections: tuple[str, ...], types: dict[str, Any]
) -> None:
    docs = documented(heading)
    assert [s for s in sections if s in types] == list(types)
    for section, cls in types.items():
        assert docs.get(section) == fields(cls), section
    assert set(docs) == set(sections)
