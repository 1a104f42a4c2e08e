from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Entry(_message.Message):
    __slots__ = ("index", "epoch", "prev_hash", "hash", "key", "payload", "appended_unix")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    APPENDED_UNIX_FIELD_NUMBER: _ClassVar[int]
    index: int
    epoch: int
    prev_hash: bytes
    hash: bytes
    key: str
    payload: bytes
    appended_unix: float
    def __init__(self, index: _Optional[int] = ..., epoch: _Optional[int] = ..., prev_hash: _Optional[bytes] = ..., hash: _Optional[bytes] = ..., key: _Optional[str] = ..., payload: _Optional[bytes] = ..., appended_unix: _Optional[float] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("after_index", "after_hash", "max_entries", "max_bytes", "wait_s", "stream_token")
    AFTER_INDEX_FIELD_NUMBER: _ClassVar[int]
    AFTER_HASH_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    STREAM_TOKEN_FIELD_NUMBER: _ClassVar[int]
    after_index: int
    after_hash: bytes
    max_entries: int
    max_bytes: int
    wait_s: float
    stream_token: bytes
    def __init__(self, after_index: _Optional[int] = ..., after_hash: _Optional[bytes] = ..., max_entries: _Optional[int] = ..., max_bytes: _Optional[int] = ..., wait_s: _Optional[float] = ..., stream_token: _Optional[bytes] = ...) -> None: ...

class PullResponse(_message.Message):
    __slots__ = ("status", "entries", "leader_last_index", "commit_index", "epoch", "detail", "stream_token", "acknowledged_index")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LEADER_LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    STREAM_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_INDEX_FIELD_NUMBER: _ClassVar[int]
    status: str
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    leader_last_index: int
    commit_index: int
    epoch: int
    detail: str
    stream_token: bytes
    acknowledged_index: int
    def __init__(self, status: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., leader_last_index: _Optional[int] = ..., commit_index: _Optional[int] = ..., epoch: _Optional[int] = ..., detail: _Optional[str] = ..., stream_token: _Optional[bytes] = ..., acknowledged_index: _Optional[int] = ...) -> None: ...

class EntryHashRequest(_message.Message):
    __slots__ = ("index",)
    INDEX_FIELD_NUMBER: _ClassVar[int]
    index: int
    def __init__(self, index: _Optional[int] = ...) -> None: ...

class EntryHashResponse(_message.Message):
    __slots__ = ("found", "hash", "last_index")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    found: bool
    hash: bytes
    last_index: int
    def __init__(self, found: _Optional[bool] = ..., hash: _Optional[bytes] = ..., last_index: _Optional[int] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("entries", "last_index")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    last_index: int
    def __init__(self, entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., last_index: _Optional[int] = ...) -> None: ...

class AppendRequest(_message.Message):
    __slots__ = ("key", "value", "request_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    request_id: int
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., request_id: _Optional[int] = ...) -> None: ...

class AppendResult(_message.Message):
    __slots__ = ("index", "epoch", "hash", "committed", "confirmed_by", "leader", "mode", "request_id", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_BY_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    epoch: int
    hash: bytes
    committed: bool
    confirmed_by: _containers.RepeatedScalarFieldContainer[str]
    leader: str
    mode: str
    request_id: int
    error: str
    def __init__(self, index: _Optional[int] = ..., epoch: _Optional[int] = ..., hash: _Optional[bytes] = ..., committed: _Optional[bool] = ..., confirmed_by: _Optional[_Iterable[str]] = ..., leader: _Optional[str] = ..., mode: _Optional[str] = ..., request_id: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("from_index", "key", "limit")
    FROM_INDEX_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    from_index: int
    key: str
    limit: int
    def __init__(self, from_index: _Optional[int] = ..., key: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ReadResponse(_message.Message):
    __slots__ = ("entries", "last_index", "commit_index")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    last_index: int
    commit_index: int
    def __init__(self, entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., last_index: _Optional[int] = ..., commit_index: _Optional[int] = ...) -> None: ...

class ReplicaStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReplicaProgress(_message.Message):
    __slots__ = ("node_id", "durable_index", "lag_entries", "lag_s", "last_pull_age_s", "in_sync_set")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DURABLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAG_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LAG_S_FIELD_NUMBER: _ClassVar[int]
    LAST_PULL_AGE_S_FIELD_NUMBER: _ClassVar[int]
    IN_SYNC_SET_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    durable_index: int
    lag_entries: int
    lag_s: float
    last_pull_age_s: float
    in_sync_set: bool
    def __init__(self, node_id: _Optional[str] = ..., durable_index: _Optional[int] = ..., lag_entries: _Optional[int] = ..., lag_s: _Optional[float] = ..., last_pull_age_s: _Optional[float] = ..., in_sync_set: _Optional[bool] = ...) -> None: ...

class ReplicaReport(_message.Message):
    __slots__ = ("node_id", "group", "role", "last_index", "last_epoch", "last_hash", "commit_index", "leader", "leader_address", "peer_address", "diverged_at", "detail", "replicas", "sync_set", "min_sync", "strict", "bad_peer", "leader_last_index")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    LAST_HASH_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DIVERGED_AT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SYNC_SET_FIELD_NUMBER: _ClassVar[int]
    MIN_SYNC_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    BAD_PEER_FIELD_NUMBER: _ClassVar[int]
    LEADER_LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    group: str
    role: str
    last_index: int
    last_epoch: int
    last_hash: bytes
    commit_index: int
    leader: str
    leader_address: str
    peer_address: str
    diverged_at: int
    detail: str
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaProgress]
    sync_set: _containers.RepeatedScalarFieldContainer[str]
    min_sync: int
    strict: bool
    bad_peer: str
    leader_last_index: int
    def __init__(self, node_id: _Optional[str] = ..., group: _Optional[str] = ..., role: _Optional[str] = ..., last_index: _Optional[int] = ..., last_epoch: _Optional[int] = ..., last_hash: _Optional[bytes] = ..., commit_index: _Optional[int] = ..., leader: _Optional[str] = ..., leader_address: _Optional[str] = ..., peer_address: _Optional[str] = ..., diverged_at: _Optional[int] = ..., detail: _Optional[str] = ..., replicas: _Optional[_Iterable[_Union[ReplicaProgress, _Mapping]]] = ..., sync_set: _Optional[_Iterable[str]] = ..., min_sync: _Optional[int] = ..., strict: _Optional[bool] = ..., bad_peer: _Optional[str] = ..., leader_last_index: _Optional[int] = ...) -> None: ...

class RecoverRequest(_message.Message):
    __slots__ = ("strategy", "dry_run")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    strategy: str
    dry_run: bool
    def __init__(self, strategy: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class RecoverReport(_message.Message):
    __slots__ = ("strategy", "diverged_at", "removed", "forensics_file", "last_index", "detail", "dry_run")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    DIVERGED_AT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    FORENSICS_FILE_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    strategy: str
    diverged_at: int
    removed: int
    forensics_file: str
    last_index: int
    detail: str
    dry_run: bool
    def __init__(self, strategy: _Optional[str] = ..., diverged_at: _Optional[int] = ..., removed: _Optional[int] = ..., forensics_file: _Optional[str] = ..., last_index: _Optional[int] = ..., detail: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class JournalAppendRequest(_message.Message):
    __slots__ = ("group", "key", "value")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    group: str
    key: str
    value: bytes
    def __init__(self, group: _Optional[str] = ..., key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class QuorumRequest(_message.Message):
    __slots__ = ("group", "dry_run")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    group: str
    dry_run: bool
    def __init__(self, group: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class QuorumMember(_message.Message):
    __slots__ = ("node_id", "role", "online", "healthy", "last_index", "lag_entries", "lag_s", "why", "eligible")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAG_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LAG_S_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    role: str
    online: bool
    healthy: bool
    last_index: int
    lag_entries: int
    lag_s: float
    why: str
    eligible: bool
    def __init__(self, node_id: _Optional[str] = ..., role: _Optional[str] = ..., online: _Optional[bool] = ..., healthy: _Optional[bool] = ..., last_index: _Optional[int] = ..., lag_entries: _Optional[int] = ..., lag_s: _Optional[float] = ..., why: _Optional[str] = ..., eligible: _Optional[bool] = ...) -> None: ...

class QuorumReport(_message.Message):
    __slots__ = ("group", "leader", "epoch", "min_sync", "strict", "met", "reason", "members", "sync_set", "commit_index", "max_async_lag_entries", "restore", "added", "removed")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    MIN_SYNC_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    MET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    SYNC_SET_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    MAX_ASYNC_LAG_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    RESTORE_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    group: str
    leader: str
    epoch: int
    min_sync: int
    strict: bool
    met: bool
    reason: str
    members: _containers.RepeatedCompositeFieldContainer[QuorumMember]
    sync_set: _containers.RepeatedScalarFieldContainer[str]
    commit_index: int
    max_async_lag_entries: int
    restore: str
    added: _containers.RepeatedScalarFieldContainer[str]
    removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group: _Optional[str] = ..., leader: _Optional[str] = ..., epoch: _Optional[int] = ..., min_sync: _Optional[int] = ..., strict: _Optional[bool] = ..., met: _Optional[bool] = ..., reason: _Optional[str] = ..., members: _Optional[_Iterable[_Union[QuorumMember, _Mapping]]] = ..., sync_set: _Optional[_Iterable[str]] = ..., commit_index: _Optional[int] = ..., max_async_lag_entries: _Optional[int] = ..., restore: _Optional[str] = ..., added: _Optional[_Iterable[str]] = ..., removed: _Optional[_Iterable[str]] = ...) -> None: ...

class DivergenceReport(_message.Message):
    __slots__ = ("nodes", "replicas")
    NODES_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[DivergentNode]
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaState]
    def __init__(self, nodes: _Optional[_Iterable[_Union[DivergentNode, _Mapping]]] = ..., replicas: _Optional[_Iterable[_Union[ReplicaState, _Mapping]]] = ...) -> None: ...

class DivergentNode(_message.Message):
    __slots__ = ("node_id", "group", "diverged_at", "last_index", "detail")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    DIVERGED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    group: str
    diverged_at: int
    last_index: int
    detail: str
    def __init__(self, node_id: _Optional[str] = ..., group: _Optional[str] = ..., diverged_at: _Optional[int] = ..., last_index: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...

class ReplicaState(_message.Message):
    __slots__ = ("node_id", "group", "role", "last_index", "diverged_at", "bad_peer", "online", "refused_report")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    DIVERGED_AT_FIELD_NUMBER: _ClassVar[int]
    BAD_PEER_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    REFUSED_REPORT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    group: str
    role: str
    last_index: int
    diverged_at: int
    bad_peer: str
    online: bool
    refused_report: str
    def __init__(self, node_id: _Optional[str] = ..., group: _Optional[str] = ..., role: _Optional[str] = ..., last_index: _Optional[int] = ..., diverged_at: _Optional[int] = ..., bad_peer: _Optional[str] = ..., online: _Optional[bool] = ..., refused_report: _Optional[str] = ...) -> None: ...

class JournalLeaderInfo(_message.Message):
    __slots__ = ("group", "leader", "peer_address", "epoch")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    group: str
    leader: str
    peer_address: str
    epoch: int
    def __init__(self, group: _Optional[str] = ..., leader: _Optional[str] = ..., peer_address: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...
