from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditEvent(_message.Message):
    __slots__ = ("seq", "time_unix", "operator", "action", "target", "scope", "reason", "outcome", "request_id", "detail", "prev_hash", "hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time_unix: float
    operator: str
    action: str
    target: str
    scope: str
    reason: str
    outcome: str
    request_id: str
    detail: str
    prev_hash: str
    hash: str
    def __init__(self, seq: _Optional[int] = ..., time_unix: _Optional[float] = ..., operator: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., scope: _Optional[str] = ..., reason: _Optional[str] = ..., outcome: _Optional[str] = ..., request_id: _Optional[str] = ..., detail: _Optional[str] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class AuditQueryRequest(_message.Message):
    __slots__ = ("since_unix", "until_unix", "operator", "action", "outcome", "target", "after_seq", "limit")
    SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    since_unix: float
    until_unix: float
    operator: str
    action: str
    outcome: str
    target: str
    after_seq: int
    limit: int
    def __init__(self, since_unix: _Optional[float] = ..., until_unix: _Optional[float] = ..., operator: _Optional[str] = ..., action: _Optional[str] = ..., outcome: _Optional[str] = ..., target: _Optional[str] = ..., after_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditEventList(_message.Message):
    __slots__ = ("events", "backend", "more")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    backend: str
    more: bool
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., backend: _Optional[str] = ..., more: _Optional[bool] = ...) -> None: ...

class AuditVerifyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditVerifyReport(_message.Message):
    __slots__ = ("ok", "checked", "first_seq", "last_seq", "problems", "backend")
    OK_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    checked: int
    first_seq: int
    last_seq: int
    problems: _containers.RepeatedScalarFieldContainer[str]
    backend: str
    def __init__(self, ok: _Optional[bool] = ..., checked: _Optional[int] = ..., first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., problems: _Optional[_Iterable[str]] = ..., backend: _Optional[str] = ...) -> None: ...

class AuditPruneRequest(_message.Message):
    __slots__ = ("older_than_s", "reason")
    OLDER_THAN_S_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    older_than_s: float
    reason: str
    def __init__(self, older_than_s: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class AuditPruneReport(_message.Message):
    __slots__ = ("removed", "anchor_seq", "anchor_hash", "event", "backend")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_SEQ_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_HASH_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    removed: int
    anchor_seq: int
    anchor_hash: str
    event: AuditEvent
    backend: str
    def __init__(self, removed: _Optional[int] = ..., anchor_seq: _Optional[int] = ..., anchor_hash: _Optional[str] = ..., event: _Optional[_Union[AuditEvent, _Mapping]] = ..., backend: _Optional[str] = ...) -> None: ...

class AuditStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditStatusReport(_message.Message):
    __slots__ = ("primary", "fallback", "fallbacks", "last_error", "unrecorded", "detail_json")
    PRIMARY_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    UNRECORDED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    primary: str
    fallback: str
    fallbacks: int
    last_error: str
    unrecorded: int
    detail_json: str
    def __init__(self, primary: _Optional[str] = ..., fallback: _Optional[str] = ..., fallbacks: _Optional[int] = ..., last_error: _Optional[str] = ..., unrecorded: _Optional[int] = ..., detail_json: _Optional[str] = ...) -> None: ...
