"""The hash chain: how an event is sealed, and how a stored sequence of events is checked.

Each event's hash is sha256 over a canonical encoding of every other field, including the
previous event's hash; the first event chains to 64 zeros, or, after a prune, to the
anchor (seq and hash of the last removed event). verify_chain() names each problem:

  edited     an event's hash does not match its contents, or the next event chains to a
             different hash than the one stored (the hash was recomputed)
  deleted    a seq is missing (or the newest events are missing, when the head is known)
  reordered  an event is stored out of seq order, or stored under another event's seq
  inserted   a seq is stored twice and one copy is not part of the chain, or an event
             predates the prune anchor

What the chain cannot show on its own: a writer who rewrites an event and every event
after it. The head (the newest seq and hash, kept apart from the events) closes part of
that gap; an exported head kept elsewhere closes the rest.
"""

import bisect
import hashlib
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edgecommon.audit_record import AUDIT_PRUNE
from hub.audit.event import GENESIS_HASH, AuditEvent, NewEvent, quantize_time

MAX_PROBLEMS = 100
_CANONICAL = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


@dataclass(frozen=True)
class Anchor:
    """Left by a prune: seq and hash of the last removed event."""

    seq: int
    hash: str
    pruned_before: float


@dataclass(frozen=True)
class Head:
    """The newest event a log knows it wrote."""

    seq: int
    hash: str


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checked: int
    first_seq: int
    last_seq: int
    problems: tuple[str, ...]


def chain_hash(
    prev_hash: str,
    seq: int,
    time: float,
    operator: str,
    action: str,
    target: str,
    scope: str,
    outcome: str,
    request_id: str,
    reason: str,
    detail: str,
) -> str:
    canonical = _CANONICAL(
        [
            "autonomy-audit-v1",
            seq,
            round(time * 1_000_000),
            operator,
            action,
            target,
            scope,
            outcome,
            request_id,
            reason,
            detail,
            prev_hash,
        ]
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def event_hash(e: AuditEvent, seq: int | None = None) -> str:
    """The hash `e` should carry (stored under `seq`, by default its own)."""
    return chain_hash(
        e.prev_hash,
        e.seq if seq is None else seq,
        e.time,
        e.operator,
        e.action,
        e.target,
        e.scope,
        e.outcome,
        e.request_id,
        e.reason,
        e.detail,
    )


def seal(new: NewEvent, seq: int, time: float, prev_hash: str) -> AuditEvent:
    """The stored form of `new` as event `seq` after `prev_hash`."""
    t = quantize_time(time)
    fields = (
        new.operator,
        new.action,
        new.target,
        new.scope,
        new.outcome,
        new.request_id,
        new.reason,
        new.detail,
    )
    return AuditEvent(seq, t, *fields, prev_hash, chain_hash(prev_hash, seq, t, *fields))


def seal_all(
    events: Sequence[NewEvent], last_seq: int, last_hash: str, time: float
) -> list[AuditEvent]:
    sealed = []
    for new in events:
        event = seal(new, last_seq + 1, time, last_hash)
        sealed.append(event)
        last_seq, last_hash = event.seq, event.hash
    return sealed


def anchor_note(anchor: Anchor) -> str:
    """What the audit.prune event's detail starts with, tying the anchor to the chain."""
    return f"prune anchor seq {anchor.seq} hash {anchor.hash}"


def _key(digest: str) -> bytes:
    """A hash as 32 bytes (half the memory of its hex form); anything else stays distinct."""
    try:
        return bytes.fromhex(digest) if len(digest) == 64 else b"?" + digest.encode()
    except ValueError:
        return b"?" + digest.encode()


@dataclass(frozen=True, slots=True)
class _Link:
    index: int
    seq: int
    eff: int  # the seq its contents were sealed with (== seq unless moved)
    intact: bool
    prev_hash: bytes
    hash: bytes
    note: str  # detail of an audit.prune event, else ""


def _link(index: int, e: AuditEvent) -> _Link:
    note = e.detail if e.action == AUDIT_PRUNE else ""
    prev, own = _key(e.prev_hash), _key(e.hash)
    if event_hash(e) == e.hash:
        return _Link(index, e.seq, e.seq, True, prev, own, note)
    for other in (e.seq - 1, e.seq + 1):
        if other >= 1 and event_hash(e, other) == e.hash:
            return _Link(index, e.seq, other, True, prev, own, note)
    return _Link(index, e.seq, e.seq, False, prev, own, note)


def _span(first: int, last: int) -> str:
    return f"event {first} was" if first == last else f"events {first}..{last} were"


def _in_order(effs: Sequence[int]) -> set[int]:
    """Positions of a longest non-decreasing subsequence: the events that did not move."""
    tails: list[int] = []
    tail_pos: list[int] = []
    back = [-1] * len(effs)
    for i, value in enumerate(effs):
        k = bisect.bisect_right(tails, value)
        if k == len(tails):
            tails.append(value)
            tail_pos.append(i)
        else:
            tails[k] = value
            tail_pos[k] = i
        back[i] = tail_pos[k - 1] if k else -1
    keep: set[int] = set()
    i = tail_pos[-1] if tail_pos else -1
    while i >= 0:
        keep.add(i)
        i = back[i]
    return keep


def _moved_problems(links: Sequence[_Link]) -> list[str]:
    """Events stored under another seq; a run shifted by the same amount is one line."""
    problems: list[str] = []
    run: list[_Link] = []
    for x in [*links, None]:
        if run and (
            x is None or x.seq - x.eff != run[-1].seq - run[-1].eff or x.eff != run[-1].eff + 1
        ):
            a, b = run[0], run[-1]
            if len(run) == 1:
                problems.append(f"event {a.eff} was reordered: it is stored as seq {a.seq}")
            else:
                problems.append(
                    f"events {a.eff}..{b.eff} were renumbered: they are stored as seq "
                    f"{a.seq}..{b.seq}"
                )
            run = []
        if x is not None and x.eff != x.seq:
            run.append(x)
    return problems


def _order_problems(links: Sequence[_Link]) -> list[str]:
    problems = _moved_problems(links)
    effs = [x.eff for x in links]
    if all(a <= b for a, b in itertools.pairwise(effs)):
        return problems
    keep = _in_order(effs)
    for i, x in enumerate(links):
        if i not in keep and x.eff == x.seq:
            before = links[i - 1].eff if i else None
            where = f"stored after event {before}" if before is not None else "stored first"
            problems.append(f"event {x.eff} was reordered: it is {where}")
    return problems


def _pick(members: list[_Link], next_prevs: set[bytes], prev_hash: bytes) -> _Link:
    return max(
        members,
        key=lambda x: (x.hash in next_prevs, x.prev_hash == prev_hash, x.intact, -x.index),
    )


def _start(anchor: Anchor | None) -> tuple[int, bytes]:
    return (anchor.seq, _key(anchor.hash)) if anchor else (0, _key(GENESIS_HASH))


def _walk(
    links: Sequence[_Link], anchor: Anchor | None, head: Head | None
) -> tuple[list[str], int, int]:
    ordered = sorted(links, key=lambda x: (x.eff, x.index))
    groups: list[list[_Link]] = []
    for x in ordered:
        if groups and groups[-1][0].eff == x.eff:
            groups[-1].append(x)
        else:
            groups.append([x])
    problems: list[str] = []
    floor = anchor.seq if anchor else 0
    prev_seq, prev_hash = _start(anchor)
    first = 0
    for gi, members in enumerate(groups):
        s = members[0].eff
        if s <= floor:
            problems.extend(
                f"event {s} predates the prune anchor (seq {floor}): it should have been "
                "pruned, or it was inserted"
                for _ in members
            )
            continue
        following = groups[gi + 1] if gi + 1 < len(groups) else []
        next_prevs = {x.prev_hash for x in following if x.eff == s + 1}
        if head is not None and head.seq == s:
            next_prevs.add(_key(head.hash))
        chosen = _pick(members, next_prevs, prev_hash)
        problems.extend(
            f"an event was inserted as seq {s}: seq {s} is stored {len(members)} times and "
            f"the copy with hash {x.hash.hex()[:12]} is not part of the chain"
            for x in members
            if x is not chosen
        )
        if s > prev_seq + 1:
            problems.append(f"{_span(prev_seq + 1, s - 1)} deleted")
        elif chosen.prev_hash != prev_hash:
            if prev_seq == 0:
                problems.append(f"event {s} was edited: it does not chain to the genesis hash")
            elif anchor is not None and prev_seq == anchor.seq:
                problems.append(
                    f"event {s} does not chain to the prune anchor (seq {prev_seq}): "
                    f"the anchor or event {s} was edited"
                )
            else:
                problems.append(
                    f"event {prev_seq} was edited: event {s} chains to a different hash"
                )
        if not chosen.intact:
            problems.append(f"event {s} was edited: its hash does not match its contents")
        first = first or s
        prev_seq, prev_hash = s, chosen.hash
    if head is not None:
        if prev_seq < head.seq:
            problems.append(f"{_span(prev_seq + 1, head.seq)} deleted from the end of the log")
        elif prev_seq > head.seq:
            problems.append(
                f"{_span(head.seq + 1, prev_seq)} inserted after the newest event written "
                f"(seq {head.seq})"
            )
        elif prev_seq and prev_hash != _key(head.hash):
            problems.append(
                f"event {prev_seq} was edited: its hash differs from the one recorded when it "
                "was written"
            )
    return problems, first, prev_seq if first else 0


class ChainChecker:
    """Collects what verification needs of each stored event (not the event itself).

    With keep_links=False it keeps only a running summary: quick_report() then answers
    for a log whose events are all in order and linked (the usual case, in constant
    memory) and returns None otherwise, when a second pass with keep_links=True finds
    and names the problems."""

    def __init__(self, keep_links: bool = True) -> None:
        self._keep = keep_links
        self._links: list[_Link] = []
        self._count = 0
        self._in_order = True
        self._first: _Link | None = None
        self._last: _Link | None = None
        self._notes: list[tuple[int, str]] = []

    def add(self, event: AuditEvent) -> None:
        link = _link(self._count, event)
        self._count += 1
        if link.note:
            self._notes.append((link.eff, link.note))
        last = self._last
        if self._in_order and (
            not link.intact
            or link.eff != link.seq
            or (last is not None and (link.seq != last.seq + 1 or link.prev_hash != last.hash))
        ):
            self._in_order = False
        if self._first is None:
            self._first = link
        self._last = link
        if self._keep:
            self._links.append(link)

    def _confirmed(self, anchor: Anchor) -> bool:
        note = anchor_note(anchor)
        return any(eff > anchor.seq and text.startswith(note) for eff, text in self._notes)

    def quick_report(
        self,
        anchor: Anchor | None,
        head: Head | None = None,
        unreadable: Sequence[str] = (),
        confirm_anchor: bool = True,
    ) -> VerifyReport | None:
        if unreadable or not self._in_order:
            return None
        end = start = _start(anchor)
        first, last = self._first, self._last
        if first is not None and last is not None:
            if (first.seq, first.prev_hash) != (start[0] + 1, start[1]):
                return None
            end = (last.seq, last.hash)
        if head is not None and (head.seq, _key(head.hash)) != end:
            return None
        if anchor is not None and confirm_anchor and not self._confirmed(anchor):
            return None
        return VerifyReport(True, self._count, first.seq if first else 0, end[0] if last else 0, ())

    def report(
        self,
        anchor: Anchor | None,
        head: Head | None = None,
        unreadable: Sequence[str] = (),
        confirm_anchor: bool = True,
    ) -> VerifyReport:
        """`confirm_anchor=False` checks a prefix of the log (what a prune removes), whose
        confirming audit.prune event lies beyond it."""
        if not self._keep:
            raise ValueError("report() needs a ChainChecker that keeps its links")
        links = self._links
        problems = list(unreadable) + _order_problems(links)
        walked, first, last = _walk(links, anchor, head)
        problems.extend(walked)
        if anchor is not None and confirm_anchor and not self._confirmed(anchor):
            problems.append(
                f"the prune anchor at seq {anchor.seq} is not confirmed by an "
                f"{AUDIT_PRUNE} event in the log: the anchor was edited or written "
                "outside a prune"
            )
        if len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            problems = [*problems[:MAX_PROBLEMS], f"... and {more} more problems"]
        return VerifyReport(not problems, len(links), first, last, tuple(problems))


def verify_chain(
    events: Iterable[AuditEvent],
    anchor: Anchor | None,
    head: Head | None = None,
    unreadable: Sequence[str] = (),
) -> VerifyReport:
    """Check events in storage order against the anchor (None: the chain starts at seq 1)
    and the head (None: unknown). `unreadable` names stored records that could not be
    parsed, each a problem; it is read after `events` is consumed, so a reader may fill it
    while yielding. Problems are capped at MAX_PROBLEMS lines."""
    checker = ChainChecker()
    for event in events:
        checker.add(event)
    return checker.report(anchor, head, unreadable)
