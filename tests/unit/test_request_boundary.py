"""The request boundary's field rule and the aggregation of unauthenticated denials."""

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecommon.boundary import (
    MAX_TEXT,
    BadRequest,
    RefusalLog,
    check_request,
    conform,
    decode,
    text_problem,
)
from edgecommon.pb import fleet_pb2, link_pb2, replication_pb2
from hub.audit.denials import MANY_SOURCES, DenialAggregator

FORBIDDEN = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))] + [
    "\u2028",
    "\u2029",
    *(chr(c) for c in range(0x202A, 0x202F)),
    *(chr(c) for c in range(0x2066, 0x206A)),
]


@given(st.text(max_size=40), st.sampled_from(FORBIDDEN), st.text(max_size=40))
def test_any_control_character_anywhere_is_refused(head: str, bad: str, tail: str) -> None:
    assert (
        "control character" in text_problem(head + bad + tail) or len(head + bad + tail) > MAX_TEXT
    )


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=60))
def test_plain_text_within_the_limit_passes(text: str) -> None:
    clean = "".join(c for c in text if c not in FORBIDDEN)
    assert text_problem(clean) == ""


def test_length_limit_is_exact() -> None:
    assert text_problem("x" * MAX_TEXT) == ""
    assert "limit is 1024" in text_problem("x" * (MAX_TEXT + 1))


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (fleet_pb2.EngageEstopRequest(scope="fleet", reason="a\x00b"), "reason"),
        (replication_pb2.ReadRequest(from_index=2**63), "from_index"),
        (fleet_pb2.EstopStatusRequest(wait_s=math.inf), "wait_s"),
        (fleet_pb2.EstopStatusRequest(wait_s=math.nan), "wait_s"),
        (
            link_pb2.AgentMessage(register=link_pb2.Register(labels={"k": "v\n"})),
            "register.labels['k']",
        ),
        (
            link_pb2.AgentMessage(register=link_pb2.Register(latched_stop_ids=["ok", "b\x7f"])),
            "register.latched_stop_ids",
        ),
    ],
)
def test_the_first_bad_field_is_named_at_any_depth(message: object, field: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(f"field {field}")):
        check_request(message)  # type: ignore[arg-type]


def test_long_text_fields_have_their_own_limit() -> None:
    beat = link_pb2.Heartbeat()
    beat.journal.detail = "e" * 3000
    check_request(link_pb2.AgentMessage(heartbeat=beat))
    beat.journal.detail = "e" * 5000
    with pytest.raises(BadRequest, match=r"heartbeat\.journal\.detail"):
        check_request(link_pb2.AgentMessage(heartbeat=beat))


def test_undecodable_bytes_are_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="does not decode"):
        decode(fleet_pb2.GetNodeRequest.FromString, b"\xff\xff\xff\xff")


# --- unauthenticated denials ---------------------------------------------------------------

denials = st.lists(
    st.tuples(
        st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]),
        st.sampled_from(["no client certificate", "token unknown"]),
        st.floats(0, 2.0),  # time since the previous denial
    ),
    max_size=200,
)


@given(denials, st.integers(1, 6))
def test_no_denial_is_lost_and_each_window_records_at_most_two_events(
    history: list[tuple[str, str, float]], max_keys: int
) -> None:
    aggregator = DenialAggregator(interval_s=1.0, max_keys=max_keys)
    now = 0.0
    recorded = []
    for source, reason, gap in history:
        now += gap
        recorded += aggregator.note(source, reason, reason, "FleetStatus", "anonymous", now, now)
        recorded += aggregator.due(now)
    recorded += aggregator.drain()
    # Nothing lost: the first of each window plus the counts add up to every denial.
    assert sum(d.count for d in recorded) == len(history)
    # Bounded: per window (key and interval) one first event and one count.
    keys = {(d.source, d.reason) for d in recorded}
    assert all(d.source == MANY_SOURCES or (d.source, d.reason) in keys for d in recorded)
    span = math.ceil(now) + 1
    assert len(recorded) <= 2 * (max_keys + 1) * (span + 1)


def test_a_flood_from_one_source_is_two_events_per_interval() -> None:
    aggregator = DenialAggregator(interval_s=60.0)
    out = []
    for i in range(10_000):
        why = f"join token t{i} is unknown to this hub"  # the caller chose the id
        out += aggregator.note("10.0.0.9", "TokenError", why, "enroll", "anonymous", i / 1000, 0)
    out += aggregator.due(61.0)
    assert [d.count for d in out] == [1, 9_999]


@given(st.text(max_size=3000), st.text(max_size=30))
def test_what_an_agent_sends_on_its_own_account_always_passes(detail: str, label: str) -> None:
    beat = link_pb2.Heartbeat(node_switch_source=detail * 3)
    beat.journal.detail = detail * 3
    message = link_pb2.AgentMessage(heartbeat=beat)
    check_request(conform(message))
    register = link_pb2.AgentMessage(register=link_pb2.Register(labels={"k": label * 100}))
    check_request(conform(register))


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, text: str, *args: object) -> None:
        self.lines.append(text % args)


class _Clock:
    def monotonic(self) -> float:
        return 0.0


@given(st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=300))
def test_refusals_log_one_line_per_method_and_kind_whatever_the_caller_varies(
    bodies: list[bytes],
) -> None:
    log = _Log()
    refusals = RefusalLog(log, _Clock())  # type: ignore[arg-type]
    for i, body in enumerate(bodies):
        try:
            decode(fleet_pb2.GetNodeRequest.FromString, b"\xff" + body)
            message = link_pb2.AgentMessage(register=link_pb2.Register(labels={f"k{i}": "\n"}))
            check_request(message)
        except BadRequest as exc:
            refusals.refused_request("/m", exc.kind, str(exc), "ipv4:10.0.0.1:1")
    assert len(log.lines) <= 2
