"""The request boundary: the first interceptor of every gRPC server we run.

A request reaches a servicer only if its bytes decode and every field in it is something
the rest of the system can hold: each string (at any depth, in lists and maps too) is at
most MAX_TEXT characters (the few fields in LONG_TEXT may be longer) and carries no
control character, line or paragraph separator or bidirectional override; each 64-bit
unsigned integer fits SQLite's signed range; each double is finite. Anything else is
answered INVALID_ARGUMENT naming the field, before any effect and before the audit log
is asked to record it — so nothing the audit log cannot hold is ever acted on. Each
refusal is logged as one line, at most once per method and problem per interval with a
count of the ones not logged: a caller without a credential cannot fill the log.

It must never raise anything but an abort at a caller, and never log a traceback for what
a caller sent.
"""

import inspect
import logging
import math
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple, cast

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from edgecommon.clock import Clock, SystemClock
from edgecommon.errors import InvalidArgument

MAX_TEXT = 1024
# Text an agent writes about its own failures: an error message can be long.
LONG_TEXT = {
    "RenewRequest.last_error": 4096,
    "JournalReport.detail": 4096,
    # A join token carries the hub's CA certificate.
    "EnrollRequest.token": 4096,
}
# 64-bit numbers that are only echoed back to the caller, never stored.
ECHOED = frozenset({"AppendRequest.request_id"})
MAX_INT64 = 2**63 - 1
# C0 and C1 controls and DEL, line/paragraph separators, and the bidirectional embedding,
# override and isolate characters that can make a log line read differently from its bytes.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSIGNED_64 = (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64)
_DOUBLES = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


class BadRequest(InvalidArgument):
    """A request that does not decode or holds a field nothing may store; `kind` is a
    stable name for the problem ("undecodable", "field NAME"), for rate-limited logs."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def text_problem(value: str, limit: int = MAX_TEXT) -> str:
    """What is wrong with `value` as a free-text field, or ""."""
    if len(value) > limit:
        return f"is {len(value)} characters long; the limit is {limit}"
    found = _FORBIDDEN.search(value)
    if found is not None:
        return f"contains the control character U+{ord(found.group()):04X}; use plain one-line text"
    return ""


def field_problem(message: Message) -> str:
    """The first field of `message` (walked depth first) that nothing may store, said as
    'field NAME PROBLEM', or ""."""
    found = _find(message)
    return f"field {found[0]} {found[1]}" if found else ""


class _Kind(IntEnum):
    SKIP = 0
    TEXT = 1
    MESSAGE = 2
    MAP = 3
    UNSIGNED_64 = 4
    DOUBLE = 5


class _Rule(NamedTuple):
    kind: _Kind
    limit: int = MAX_TEXT
    repeated: bool = False


# Field descriptor -> its rule, filled as fields are first seen (a memo of facts that never
# change: the descriptors are fixed when the generated code loads).
_RULES: dict[FieldDescriptor, _Rule] = {}


def _rule(descriptor: FieldDescriptor) -> _Rule:
    """How to check one field; worked out once per field, since requests on hot paths
    (heartbeats, permits) are checked one by one."""
    rule = _RULES.get(descriptor)
    if rule is None:
        rule = _RULES[descriptor] = _work_out_rule(descriptor)
    return rule


def _work_out_rule(descriptor: FieldDescriptor) -> _Rule:
    repeated = descriptor.is_repeated
    if descriptor.type == FieldDescriptor.TYPE_STRING:
        key = f"{descriptor.containing_type.name}.{descriptor.name}"
        return _Rule(_Kind.TEXT, LONG_TEXT.get(key, MAX_TEXT), repeated)
    if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
        if descriptor.message_type.GetOptions().map_entry:
            return _Rule(_Kind.MAP)
        return _Rule(_Kind.MESSAGE, repeated=repeated)
    if descriptor.type in _UNSIGNED_64:
        if f"{descriptor.containing_type.name}.{descriptor.name}" in ECHOED:
            return _Rule(_Kind.SKIP)
        return _Rule(_Kind.UNSIGNED_64, repeated=repeated)
    if descriptor.type in _DOUBLES:
        return _Rule(_Kind.DOUBLE, repeated=repeated)
    return _Rule(_Kind.SKIP)


def _clean(message: Message) -> bool:
    """Whether every field of `message` is acceptable: the hot path (every heartbeat, every
    permit), kept to plain loops; _find says what is wrong once this says something is."""
    rules = _RULES
    for descriptor, value in message.ListFields():
        kind, limit, repeated = rules.get(descriptor) or _rule(descriptor)
        if kind is _Kind.SKIP:
            continue
        if kind is _Kind.MAP:
            if _find_in_map(descriptor, value):
                return False
            continue
        for item in value if repeated else (value,):
            if kind is _Kind.TEXT:
                if len(item) > limit or _FORBIDDEN.search(item):
                    return False
            elif kind is _Kind.MESSAGE:
                if not _clean(item):
                    return False
            elif kind is _Kind.UNSIGNED_64:
                if item > MAX_INT64:
                    return False
            elif not math.isfinite(item):
                return False
    return True


def _find(message: Message) -> tuple[str, str] | None:
    """(dotted field name, problem) of the first unacceptable field, or None. Names are
    built only on the way out of a failure."""
    if _clean(message):
        return None
    for descriptor, value in message.ListFields():
        rule = _rule(descriptor)
        if rule.kind is _Kind.SKIP:
            continue
        if rule.kind is _Kind.MAP:
            found = _find_in_map(descriptor, value)
            if found:
                return found
            continue
        for item in value if rule.repeated else (value,):
            problem = _scalar_problem(rule, item)
            if problem:
                return descriptor.name, problem
            if rule.kind is _Kind.MESSAGE and (found := _find(item)):
                return f"{descriptor.name}.{found[0]}", found[1]
    return None


def _scalar_problem(rule: _Rule, value: Any) -> str:
    if rule.kind is _Kind.TEXT and (len(value) > rule.limit or _FORBIDDEN.search(value)):
        return text_problem(value, rule.limit)
    if rule.kind is _Kind.UNSIGNED_64 and value > MAX_INT64:
        return f"is {value}; the largest value accepted is {MAX_INT64}"
    if rule.kind is _Kind.DOUBLE and not math.isfinite(value):
        return f"is {value}; give a finite number"
    return ""


def _find_in_map(descriptor: FieldDescriptor, value: Any) -> tuple[str, str] | None:
    entry = descriptor.message_type
    key_rule = _rule(entry.fields_by_name["key"])
    value_rule = _rule(entry.fields_by_name["value"])
    for key, item in value.items():
        problem = _scalar_problem(key_rule, key) or _scalar_problem(value_rule, item)
        if problem:
            return _entry_name(descriptor, key), problem
        if value_rule.kind is _Kind.MESSAGE and (found := _find(item)):
            return f"{_entry_name(descriptor, key)}.{found[0]}", found[1]
    return None


def _entry_name(descriptor: FieldDescriptor, key: Any) -> str:
    shown = repr(key) if len(repr(key)) <= 40 else repr(key)[:37] + "...'"
    return f"{descriptor.name}[{shown}]"


def one_line(text: str, limit: int = MAX_TEXT) -> str:
    """`text` made acceptable: forbidden characters become spaces, and it is cut to `limit`
    (the cut is marked with an ellipsis)."""
    text = _FORBIDDEN.sub(" ", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def conform(message: Message) -> Message:
    """Make the free text `message` carries acceptable to the boundary, in place, for what
    a daemon sends on its own account (error messages, sources): the other side would
    otherwise refuse the whole message for one long error text."""
    for descriptor, value in message.ListFields():
        if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
            is_map = descriptor.message_type.GetOptions().map_entry
            if is_map and descriptor.message_type.fields_by_name["value"].message_type is None:
                entries = {one_line(str(k)): one_line(v) for k, v in value.items()}
                value.clear()
                value.update(entries)
            elif not is_map:
                for item in value if descriptor.is_repeated else (value,):
                    conform(item)
        elif descriptor.type == FieldDescriptor.TYPE_STRING:
            limit = LONG_TEXT.get(f"{descriptor.containing_type.name}.{descriptor.name}", MAX_TEXT)
            if descriptor.is_repeated:
                value[:] = [one_line(v, limit) for v in value]
            else:
                setattr(message, descriptor.name, one_line(value, limit))
    return message


def check_request(message: Message) -> Message:
    """`message`, or BadRequest naming its first unacceptable field."""
    found = _find(message)
    if found:
        raise BadRequest(
            f"{type(message).__name__}: field {found[0]} {found[1]}",
            f"field {found[0].split('[')[0]}",  # map keys vary; the field does not
        )
    return message


def decode(deserializer: Callable[[bytes], Message], raw: bytes) -> Message:
    """Decode and check one request, or raise BadRequest saying why."""
    try:
        message = deserializer(raw)
    except DecodeError:
        raise BadRequest(
            f"the request ({len(raw)} bytes) does not decode as this method's message; "
            "check the client's generated code matches this server's version",
            "undecodable",
        ) from None
    return check_request(message)


@dataclass(frozen=True)
class BoundaryStatistics:
    refused: int  # requests refused (INVALID_ARGUMENT) since the server started
    refusal_keys: int  # (method, problem) pairs being rate-limited in the log now
    not_logged: int  # refusals counted but not yet reported in a log line


@dataclass
class RefusalLog:
    """One log line per (method, problem) per interval; the rest are counted and reported
    with the next line for that key."""

    log: logging.Logger
    clock: Clock
    interval_s: float = 60.0
    max_keys: int = 1000
    refused: int = 0
    _next: dict[tuple[str, str], float] = field(default_factory=dict)
    _quiet: dict[tuple[str, str], int] = field(default_factory=dict)

    def refused_request(self, method: str, kind: str, problem: str, peer: str) -> None:
        """`kind` names the problem stably (never a length or a value the caller chose)."""
        self.refused += 1
        key = (method, kind)
        now = self.clock.monotonic()
        if key not in self._next and len(self._next) >= self.max_keys:
            key = ("*", "*")  # bounded: one more key for everything else
        if now < self._next.get(key, 0.0):
            self._quiet[key] = self._quiet.get(key, 0) + 1
            return
        self._next[key] = now + self.interval_s
        quiet = self._quiet.pop(key, 0)
        more = (
            f" ({quiet} more like it not logged in the last {self.interval_s:g}s)" if quiet else ""
        )
        self.log.warning("refused %s from %s: %s%s", method, peer or "?", problem, more)

    def statistics(self) -> BoundaryStatistics:
        return BoundaryStatistics(self.refused, len(self._next), sum(self._quiet.values()))


class RequestBoundary(grpc.aio.ServerInterceptor):
    """Decode and check every request before any other interceptor or servicer sees it."""

    def __init__(self, log: logging.Logger, clock: Clock | None = None) -> None:
        self.refusals = RefusalLog(log, clock or SystemClock())

    def statistics(self) -> BoundaryStatistics:
        return self.refusals.statistics()

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method: str = handler_call_details.method
        deserialize = handler.request_deserializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, deserialize, handler.unary_unary),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._unary_stream(method, deserialize, handler.unary_stream),
                response_serializer=handler.response_serializer,
            )
        checked = self._checked_deserializer(deserialize)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._streaming(method, handler.stream_unary),
                request_deserializer=checked,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(method, handler.stream_stream),
            request_deserializer=checked,
            response_serializer=handler.response_serializer,
        )

    async def _refuse(
        self, method: str, exc: BadRequest, context: grpc.aio.ServicerContext
    ) -> None:
        self.refusals.refused_request(method, exc.kind, str(exc), context.peer())
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def _unary(self, method: str, deserialize: Callable, behavior: Callable) -> Callable:
        async def unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            try:
                request = decode(deserialize, raw)
            except BadRequest as exc:
                await self._refuse(method, exc, context)
            return await behavior(request, context)

        return unary

    def _unary_stream(self, method: str, deserialize: Callable, behavior: Callable) -> Callable:
        async def unary_stream(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator:
            try:
                request = decode(deserialize, raw)
            except BadRequest as exc:
                await self._refuse(method, exc, context)
            result = behavior(request, context)
            if inspect.isasyncgen(result):
                try:
                    async for item in result:
                        yield item
                finally:
                    await result.aclose()  # now, not whenever it is collected
            else:
                await result

        return unary_stream

    @staticmethod
    def _checked_deserializer(deserialize: Callable) -> Callable[[bytes], Message]:
        # In a request stream, messages are decoded when the servicer reads them: the
        # BadRequest surfaces there, and _streaming below answers it.
        return lambda raw: decode(deserialize, raw)

    def _streaming(self, method: str, behavior: Callable) -> Callable:
        async def streaming(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            response = None
            try:
                result = behavior(requests, context)
                if inspect.isasyncgen(result):
                    try:
                        async for item in result:
                            await context.write(item)
                    finally:
                        await result.aclose()  # now, not whenever it is collected
                else:
                    response = await result
            except* BadRequest as group:  # also when a task group of the servicer read it
                await self._refuse(method, _first(group), context)
            return response

        return streaming


def _first(group: BaseExceptionGroup) -> BadRequest:
    """The first BadRequest in a (possibly nested) exception group."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return cast(BadRequest, exc)  # except* matched only BadRequest leaves
