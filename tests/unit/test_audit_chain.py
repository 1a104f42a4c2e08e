"""The audit hash chain (INV-AUDIT-01): an untouched chain verifies, and every edit,
deletion, reordering or insertion is detected and named, over random chains and random
tampering. Also event and filter validation and the export formats."""

import csv
import dataclasses
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecommon.audit_record import csv_header, to_csv_row, to_jsonl_line
from edgecommon.errors import InvalidArgument
from hub.audit.chain import (
    Anchor,
    ChainChecker,
    Head,
    anchor_note,
    event_hash,
    seal,
    seal_all,
    verify_chain,
)
from hub.audit.event import (
    GENESIS_HASH,
    AuditEvent,
    AuditFilter,
    NewEvent,
    event_from_dict,
    validate_filter,
    validate_new_event,
)

T0 = 1_790_000_000.0

texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8
)
new_events = st.builds(
    NewEvent,
    operator=texts.filter(bool),
    action=st.sampled_from(["estop.engage", "rbac.assign", "enroll", "request.denied"]),
    target=texts,
    scope=st.sampled_from(["fleet", "group:a", "node:n1"]),
    outcome=st.sampled_from(["attempt", "success", "failure", "denied", "bypassed"]),
    request_id=texts,
    reason=texts,
    detail=texts,
)


def chain(news: list[NewEvent]) -> list[AuditEvent]:
    out: list[AuditEvent] = []
    seq, prev = 0, GENESIS_HASH
    for i, new in enumerate(news):
        e = seal(new, seq + 1, T0 + i * 0.25, prev)
        out.append(e)
        seq, prev = e.seq, e.hash
    return out


def head_of(events: list[AuditEvent]) -> Head:
    return Head(events[-1].seq, events[-1].hash)


def sample(n: int) -> list[AuditEvent]:
    return chain(
        [
            NewEvent(f"op{i}", "estop.engage", "node:n1", "fleet", "success", f"r{i}")
            for i in range(n)
        ]
    )


def mentions(report, *words: str) -> bool:
    return any(all(w in p for w in words) for p in report.problems)


@settings(max_examples=200, deadline=None)
@given(st.lists(new_events, max_size=30))
def test_inv_audit_01_untouched_chain_verifies(news: list[NewEvent]) -> None:
    events = chain(news)
    report = verify_chain(events, None, head_of(events) if events else None)
    assert report.ok, report.problems
    assert report.checked == len(events)
    assert report.last_seq == len(events)


FIELDS = (
    "time",
    "operator",
    "action",
    "target",
    "scope",
    "outcome",
    "request_id",
    "reason",
    "detail",
    "prev_hash",
)


@settings(max_examples=300, deadline=None)
@given(st.lists(new_events, min_size=1, max_size=25), st.data())
def test_inv_audit_01_edited_event_is_named(news: list[NewEvent], data: st.DataObject) -> None:
    events = chain(news)
    k = data.draw(st.integers(0, len(events) - 1))
    name = data.draw(st.sampled_from(FIELDS))
    old = getattr(events[k], name)
    new = old + 1.5 if name == "time" else ("f" * 64 if name == "prev_hash" else old + "x")
    if new == old:
        new = "0" * 64
    events[k] = dataclasses.replace(events[k], **{name: new})
    report = verify_chain(events, None)
    assert not report.ok
    assert mentions(report, f"event {k + 1} was edited"), report.problems


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 25), st.data())
def test_inv_audit_01_edit_with_recomputed_hash_is_named(n: int, data: st.DataObject) -> None:
    events = sample(n)
    head = head_of(events)
    k = data.draw(st.integers(0, n - 1))
    forged = dataclasses.replace(events[k], reason="nothing to see")
    events[k] = dataclasses.replace(forged, hash=event_hash(forged))
    report = verify_chain(events, None, head)
    assert mentions(report, f"event {k + 1} was edited"), report.problems


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 25), st.data())
def test_inv_audit_01_deleted_events_are_named(n: int, data: st.DataObject) -> None:
    events = sample(n)
    head = head_of(events)
    k = data.draw(st.integers(0, n - 1))
    count = data.draw(st.integers(1, n - k))
    del events[k : k + count]
    report = verify_chain(events, None, head)
    assert not report.ok
    span = f"event {k + 1} was" if count == 1 else f"events {k + 1}..{k + count} were"
    assert mentions(report, span, "deleted"), report.problems


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 25), st.data())
def test_inv_audit_01_moved_event_is_reported_as_reordered(n: int, data: st.DataObject) -> None:
    events = sample(n)
    i = data.draw(st.integers(0, n - 1))
    j = data.draw(st.integers(0, n - 1).filter(lambda x: x != i))
    moved = events.pop(i)
    events.insert(j, moved)
    report = verify_chain(events, None, Head(n, sample(n)[-1].hash))
    assert not report.ok
    lo, hi = min(i, j) + 1, max(i, j) + 1
    named = [p for p in report.problems if "reordered" in p]
    assert named, report.problems
    assert all(lo <= int(p.split()[1]) <= hi for p in named), report.problems
    assert all("reordered" in p for p in report.problems), report.problems


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 25), st.data())
def test_inv_audit_01_swapped_seqs_are_reported_as_reordered(n: int, data: st.DataObject) -> None:
    """A database row keeps its place but two adjacent rows trade their seq values."""
    events = sample(n)
    k = data.draw(st.integers(0, n - 2))
    a, b = events[k], events[k + 1]
    events[k], events[k + 1] = (
        dataclasses.replace(b, seq=a.seq),
        dataclasses.replace(a, seq=b.seq),
    )
    report = verify_chain(events, None, head_of(sample(n)))
    assert mentions(report, f"event {k + 1} was reordered"), report.problems
    assert mentions(report, f"event {k + 2} was reordered"), report.problems


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 25), st.data())
def test_inv_audit_01_inserted_event_is_named(n: int, data: st.DataObject) -> None:
    """The forger seals a well-formed event onto its predecessor and reuses a seq, or
    renumbers every later event to make room."""
    events = sample(n)
    k = data.draw(st.integers(0, n - 1))
    prev = events[k - 1].hash if k else GENESIS_HASH
    forged = seal(
        NewEvent("mallory", "estop.release", "fleet", "fleet", "success", "x"),
        k + 1,
        T0 + k * 0.25,
        prev,
    )
    renumber = data.draw(st.booleans())
    if renumber:
        events[k:] = [dataclasses.replace(e, seq=e.seq + 1) for e in events[k:]]
    before = data.draw(st.booleans()) or renumber
    events.insert(k if before else k + 1, forged)
    report = verify_chain(events, None, head_of(sample(n)) if not renumber else None)
    assert not report.ok
    assert mentions(report, f"inserted as seq {k + 1}"), report.problems


def test_every_single_tamper_on_a_small_chain_is_detected() -> None:
    base = sample(6)
    head = head_of(base)
    for k in range(6):
        for name in FIELDS:
            edited = list(base)
            value = getattr(base[k], name)
            edited[k] = dataclasses.replace(
                base[k], **{name: value + 1 if name == "time" else value + "z"}
            )
            assert not verify_chain(edited, None, head).ok, (k, name)
        deleted = base[:k] + base[k + 1 :]
        assert not verify_chain(deleted, None, head).ok, k
        for j in range(6):
            if j != k:
                moved = list(base)
                moved.insert(j, moved.pop(k))
                assert not verify_chain(moved, None, head).ok, (k, j)


def pruned(events: list[AuditEvent], k: int) -> tuple[list[AuditEvent], Anchor]:
    anchor = Anchor(events[k - 1].seq, events[k - 1].hash, T0 + k)
    last = events[-1]
    prune = seal(
        NewEvent(
            "hub",
            "audit.prune",
            "audit",
            "fleet",
            "success",
            "p",
            detail=anchor_note(anchor) + " (3 events)",
        ),
        last.seq + 1,
        T0 + 100,
        last.hash,
    )
    return [*events[k:], prune], anchor


def test_prune_anchor_lets_a_pruned_chain_verify() -> None:
    kept, anchor = pruned(sample(10), 4)
    report = verify_chain(kept, anchor, head_of(kept))
    assert report.ok, report.problems
    assert (report.first_seq, report.last_seq, report.checked) == (5, 11, 7)


def test_pruned_chain_without_its_anchor_names_the_deleted_events() -> None:
    kept, _ = pruned(sample(10), 4)
    assert mentions(verify_chain(kept, None), "events 1..4 were deleted")


def test_an_anchor_not_confirmed_by_a_prune_event_is_reported() -> None:
    events = sample(10)
    forged = Anchor(events[3].seq, events[3].hash, T0)
    report = verify_chain(events[4:], forged)
    assert mentions(report, "not confirmed"), report.problems


def test_an_edited_anchor_is_reported() -> None:
    kept, anchor = pruned(sample(10), 4)
    report = verify_chain(kept, dataclasses.replace(anchor, hash="a" * 64))
    assert mentions(report, "does not chain to the prune anchor"), report.problems


def test_events_left_behind_a_prune_anchor_are_reported() -> None:
    events = sample(10)
    kept, anchor = pruned(events, 4)
    report = verify_chain([events[2], *kept], anchor)
    assert mentions(report, "event 3 predates the prune anchor"), report.problems


def test_problem_list_is_capped() -> None:
    events = [dataclasses.replace(e, reason="x") for e in sample(300)]
    report = verify_chain(events, None)
    assert len(report.problems) == 101
    assert report.problems[-1] == "... and 200 more problems"


def test_seal_all_continues_a_chain() -> None:
    news = [NewEvent("a", "x", "", "fleet", "attempt", "1")] * 3
    events = seal_all(news, 7, "b" * 64, T0 + 0.1234567)
    assert [e.seq for e in events] == [8, 9, 10]
    assert events[0].prev_hash == "b" * 64
    assert events[2].prev_hash == events[1].hash
    assert events[0].time == 1_790_000_000.123457


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"operator": ""}, "operator is empty"),
        ({"outcome": "maybe"}, "outcome 'maybe' is unknown"),
        ({"target": "a\x00b"}, "target contains a NUL"),
        ({"action": 5}, "action must be text"),
        ({"scope": "s" * 2000}, "scope is 2000 characters"),
    ],
)
def test_bad_event_fields_are_named(change: dict, words: str) -> None:
    good = NewEvent("alice", "estop.engage", "node:n1", "fleet", "attempt", "r1")
    validate_new_event(good)
    with pytest.raises(InvalidArgument, match=words):
        validate_new_event(dataclasses.replace(good, **change))


@pytest.mark.parametrize(
    ("f", "words"),
    [
        (AuditFilter(since=5.0, until=1.0), "since .* is after until"),
        (AuditFilter(limit=-1), "limit must be an integer >= 0"),
        (AuditFilter(after_seq=True), "after_seq must be an integer"),
        (AuditFilter(since=float("nan")), "since must be unix seconds"),
        (AuditFilter(outcome="won"), "outcome 'won' is unknown"),
    ],
)
def test_bad_filters_are_named(f: AuditFilter, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        validate_filter(f)


def test_filter_matches_every_field() -> None:
    e = sample(3)[1]
    assert AuditFilter().matches(e)
    assert AuditFilter(
        since=e.time,
        until=e.time + 1,
        operator="op1",
        action="estop.engage",
        outcome="success",
        target="node:n1",
        after_seq=1,
    ).matches(e)
    assert not AuditFilter(until=e.time).matches(e)
    assert not AuditFilter(after_seq=2).matches(e)
    assert not AuditFilter(operator="op2").matches(e)


def test_stored_form_round_trips_and_rejects_damage() -> None:
    e = sample(2)[1]
    assert event_from_dict(json.loads(json.dumps(e.to_dict()))) == e
    assert list(e.to_dict()) == [
        "seq",
        "time",
        "operator",
        "action",
        "target",
        "scope",
        "outcome",
        "request_id",
        "reason",
        "detail",
        "prev_hash",
        "hash",
    ]
    for bad in ({**e.to_dict(), "seq": "2"}, {**e.to_dict(), "extra": 1}, [1]):
        with pytest.raises(ValueError):  # noqa: PT011 - the message is checked by callers
            event_from_dict(bad)


def test_exports_keep_field_order_and_quote_csv() -> None:
    e = dataclasses.replace(sample(1)[0], reason='say "no",\nplease')
    line = json.loads(to_jsonl_line(e))
    assert list(line)[:3] == ["seq", "time", "time_utc"]
    assert line["time_utc"] == "2026-09-21T14:13:20.000000Z"
    rows = list(csv.reader(io.StringIO(csv_header() + to_csv_row(e))))
    assert rows[0][:3] == ["seq", "time", "time_utc"]
    assert rows[1][rows[0].index("reason")] == 'say "no",\nplease'


def tamper(events: list[AuditEvent], kind: int, k: int, j: int) -> list[AuditEvent]:
    out = list(events)
    if kind == 1:
        out[k] = dataclasses.replace(out[k], reason=out[k].reason + "!")
    elif kind == 2:
        del out[k]
    elif kind == 3:
        out.insert(j, out.pop(k))
    elif kind == 4:
        out.insert(k, dataclasses.replace(out[k], operator="mallory"))
    return out


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 20), st.integers(0, 4), st.data())
def test_quick_report_agrees_with_the_full_report(n: int, kind: int, data: st.DataObject) -> None:
    """The constant-memory first pass answers only when the full pass would say ok."""
    events = sample(n)
    head = head_of(events) if events else None
    if n and kind:
        k = data.draw(st.integers(0, n - 1))
        events = tamper(events, kind, k, data.draw(st.integers(0, n - 1)))
    with_anchor = n > 4 and data.draw(st.booleans())
    anchor = None
    if with_anchor:
        events, anchor = pruned(events, 2)
        head = head_of(events)
    quick, full = ChainChecker(keep_links=False), ChainChecker()
    for e in events:
        quick.add(e)
        full.add(e)
    fast = quick.quick_report(anchor, head)
    slow = full.report(anchor, head)
    assert fast is None or fast == slow
    if kind == 0 or n == 0:
        assert fast == slow
        assert slow.ok, slow.problems
    with pytest.raises(ValueError, match="keeps its links"):
        quick.report(anchor, head)
