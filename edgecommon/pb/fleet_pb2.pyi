from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GroupLeaderRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class LeaderCandidate(_message.Message):
    __slots__ = ("node_id", "eligible", "why_not", "position", "state")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    WHY_NOT_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    eligible: bool
    why_not: str
    position: int
    state: str
    def __init__(self, node_id: _Optional[str] = ..., eligible: _Optional[bool] = ..., why_not: _Optional[str] = ..., position: _Optional[int] = ..., state: _Optional[str] = ...) -> None: ...

class GroupLeadership(_message.Message):
    __slots__ = ("group", "leader", "epoch", "time_left_s", "paused", "switchover_to", "candidates")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TIME_LEFT_S_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    SWITCHOVER_TO_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    group: str
    leader: str
    epoch: int
    time_left_s: float
    paused: bool
    switchover_to: str
    candidates: _containers.RepeatedCompositeFieldContainer[LeaderCandidate]
    def __init__(self, group: _Optional[str] = ..., leader: _Optional[str] = ..., epoch: _Optional[int] = ..., time_left_s: _Optional[float] = ..., paused: _Optional[bool] = ..., switchover_to: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[LeaderCandidate, _Mapping]]] = ...) -> None: ...

class LeaderReport(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[GroupLeadership]
    def __init__(self, groups: _Optional[_Iterable[_Union[GroupLeadership, _Mapping]]] = ...) -> None: ...

class ResignLeaderRequest(_message.Message):
    __slots__ = ("group", "to", "timeout_s", "dry_run")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    group: str
    to: str
    timeout_s: float
    dry_run: bool
    def __init__(self, group: _Optional[str] = ..., to: _Optional[str] = ..., timeout_s: _Optional[float] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ResignReport(_message.Message):
    __slots__ = ("group", "from_leader", "to", "old_epoch", "new_epoch", "done", "dry_run", "leaderless_s", "detail", "target_lag", "at_risk")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    FROM_LEADER_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    OLD_EPOCH_FIELD_NUMBER: _ClassVar[int]
    NEW_EPOCH_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    LEADERLESS_S_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TARGET_LAG_FIELD_NUMBER: _ClassVar[int]
    AT_RISK_FIELD_NUMBER: _ClassVar[int]
    group: str
    from_leader: str
    to: str
    old_epoch: int
    new_epoch: int
    done: bool
    dry_run: bool
    leaderless_s: float
    detail: str
    target_lag: int
    at_risk: str
    def __init__(self, group: _Optional[str] = ..., from_leader: _Optional[str] = ..., to: _Optional[str] = ..., old_epoch: _Optional[int] = ..., new_epoch: _Optional[int] = ..., done: _Optional[bool] = ..., dry_run: _Optional[bool] = ..., leaderless_s: _Optional[float] = ..., detail: _Optional[str] = ..., target_lag: _Optional[int] = ..., at_risk: _Optional[str] = ...) -> None: ...

class PauseGroupRequest(_message.Message):
    __slots__ = ("group", "paused")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    group: str
    paused: bool
    def __init__(self, group: _Optional[str] = ..., paused: _Optional[bool] = ...) -> None: ...

class EngageEstopRequest(_message.Message):
    __slots__ = ("scope", "reason")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    scope: str
    reason: str
    def __init__(self, scope: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReleaseEstopRequest(_message.Message):
    __slots__ = ("scope", "reason")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    scope: str
    reason: str
    def __init__(self, scope: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class EstopStatusRequest(_message.Message):
    __slots__ = ("stop_id", "wait_s")
    STOP_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    stop_id: str
    wait_s: float
    def __init__(self, stop_id: _Optional[str] = ..., wait_s: _Optional[float] = ...) -> None: ...

class EstopNode(_message.Message):
    __slots__ = ("node_id", "group", "state", "ack_latency_s", "acked_unix")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACK_LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    ACKED_UNIX_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    group: str
    state: str
    ack_latency_s: float
    acked_unix: float
    def __init__(self, node_id: _Optional[str] = ..., group: _Optional[str] = ..., state: _Optional[str] = ..., ack_latency_s: _Optional[float] = ..., acked_unix: _Optional[float] = ...) -> None: ...

class Estop(_message.Message):
    __slots__ = ("stop_id", "scope", "reason", "operator", "engaged_unix", "active", "released_unix", "release_reason", "release_operator", "nodes")
    STOP_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    ENGAGED_UNIX_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    RELEASED_UNIX_FIELD_NUMBER: _ClassVar[int]
    RELEASE_REASON_FIELD_NUMBER: _ClassVar[int]
    RELEASE_OPERATOR_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    stop_id: str
    scope: str
    reason: str
    operator: str
    engaged_unix: float
    active: bool
    released_unix: float
    release_reason: str
    release_operator: str
    nodes: _containers.RepeatedCompositeFieldContainer[EstopNode]
    def __init__(self, stop_id: _Optional[str] = ..., scope: _Optional[str] = ..., reason: _Optional[str] = ..., operator: _Optional[str] = ..., engaged_unix: _Optional[float] = ..., active: _Optional[bool] = ..., released_unix: _Optional[float] = ..., release_reason: _Optional[str] = ..., release_operator: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[EstopNode, _Mapping]]] = ...) -> None: ...

class EstopReport(_message.Message):
    __slots__ = ("stops", "hub_time_unix")
    STOPS_FIELD_NUMBER: _ClassVar[int]
    HUB_TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    stops: _containers.RepeatedCompositeFieldContainer[Estop]
    hub_time_unix: float
    def __init__(self, stops: _Optional[_Iterable[_Union[Estop, _Mapping]]] = ..., hub_time_unix: _Optional[float] = ...) -> None: ...

class AutonomyStatusRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class NodeAutonomy(_message.Message):
    __slots__ = ("node_id", "group", "state", "effective", "node_switch_enabled", "node_switch_source", "fleet_switch_revision", "applied", "applied_after_s", "stopped")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FIELD_NUMBER: _ClassVar[int]
    NODE_SWITCH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    NODE_SWITCH_SOURCE_FIELD_NUMBER: _ClassVar[int]
    FLEET_SWITCH_REVISION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    group: str
    state: str
    effective: bool
    node_switch_enabled: bool
    node_switch_source: str
    fleet_switch_revision: int
    applied: bool
    applied_after_s: float
    stopped: bool
    def __init__(self, node_id: _Optional[str] = ..., group: _Optional[str] = ..., state: _Optional[str] = ..., effective: _Optional[bool] = ..., node_switch_enabled: _Optional[bool] = ..., node_switch_source: _Optional[str] = ..., fleet_switch_revision: _Optional[int] = ..., applied: _Optional[bool] = ..., applied_after_s: _Optional[float] = ..., stopped: _Optional[bool] = ...) -> None: ...

class AutonomyReport(_message.Message):
    __slots__ = ("autonomy_enabled", "source", "revision", "error", "file", "nodes", "changed_unix")
    AUTONOMY_ENABLED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    CHANGED_UNIX_FIELD_NUMBER: _ClassVar[int]
    autonomy_enabled: bool
    source: str
    revision: int
    error: str
    file: str
    nodes: _containers.RepeatedCompositeFieldContainer[NodeAutonomy]
    changed_unix: float
    def __init__(self, autonomy_enabled: _Optional[bool] = ..., source: _Optional[str] = ..., revision: _Optional[int] = ..., error: _Optional[str] = ..., file: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[NodeAutonomy, _Mapping]]] = ..., changed_unix: _Optional[float] = ...) -> None: ...

class SetAutonomyRequest(_message.Message):
    __slots__ = ("enabled", "reason", "wait_s")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    reason: str
    wait_s: float
    def __init__(self, enabled: _Optional[bool] = ..., reason: _Optional[str] = ..., wait_s: _Optional[float] = ...) -> None: ...

class CreateJoinTokenRequest(_message.Message):
    __slots__ = ("node_id", "group", "operator", "ttl_s")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    group: str
    operator: str
    ttl_s: float
    def __init__(self, node_id: _Optional[str] = ..., group: _Optional[str] = ..., operator: _Optional[str] = ..., ttl_s: _Optional[float] = ...) -> None: ...

class CreateJoinTokenResponse(_message.Message):
    __slots__ = ("token", "token_id", "expires_unix", "kind", "subject_id", "group")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    token: str
    token_id: str
    expires_unix: float
    kind: str
    subject_id: str
    group: str
    def __init__(self, token: _Optional[str] = ..., token_id: _Optional[str] = ..., expires_unix: _Optional[float] = ..., kind: _Optional[str] = ..., subject_id: _Optional[str] = ..., group: _Optional[str] = ...) -> None: ...

class FleetStatusRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class FleetStatusResponse(_message.Message):
    __slots__ = ("nodes", "online", "offline", "hub_time_unix", "statistics_json")
    NODES_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_FIELD_NUMBER: _ClassVar[int]
    HUB_TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_JSON_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    online: int
    offline: int
    hub_time_unix: float
    statistics_json: str
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., online: _Optional[int] = ..., offline: _Optional[int] = ..., hub_time_unix: _Optional[float] = ..., statistics_json: _Optional[str] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("node_id", "group", "labels", "agent_version", "cert_serial", "cert_expires_unix", "first_seen_unix", "last_seen_unix", "state", "state_since_unix", "state_reason", "hostname", "metrics", "cert_renewal_error", "cert_revoked")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CERT_SERIAL_FIELD_NUMBER: _ClassVar[int]
    CERT_EXPIRES_UNIX_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UNIX_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CERT_RENEWAL_ERROR_FIELD_NUMBER: _ClassVar[int]
    CERT_REVOKED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    group: str
    labels: _containers.ScalarMap[str, str]
    agent_version: str
    cert_serial: str
    cert_expires_unix: float
    first_seen_unix: float
    last_seen_unix: float
    state: str
    state_since_unix: float
    state_reason: str
    hostname: str
    metrics: NodeMetrics
    cert_renewal_error: str
    cert_revoked: bool
    def __init__(self, node_id: _Optional[str] = ..., group: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., agent_version: _Optional[str] = ..., cert_serial: _Optional[str] = ..., cert_expires_unix: _Optional[float] = ..., first_seen_unix: _Optional[float] = ..., last_seen_unix: _Optional[float] = ..., state: _Optional[str] = ..., state_since_unix: _Optional[float] = ..., state_reason: _Optional[str] = ..., hostname: _Optional[str] = ..., metrics: _Optional[_Union[NodeMetrics, _Mapping]] = ..., cert_renewal_error: _Optional[str] = ..., cert_revoked: _Optional[bool] = ...) -> None: ...

class NodeMetrics(_message.Message):
    __slots__ = ("uptime_s", "cpu_percent", "memory_percent", "disk_percent", "rss_bytes", "heartbeat_seq")
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    DISK_PERCENT_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_SEQ_FIELD_NUMBER: _ClassVar[int]
    uptime_s: float
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    rss_bytes: int
    heartbeat_seq: int
    def __init__(self, uptime_s: _Optional[float] = ..., cpu_percent: _Optional[float] = ..., memory_percent: _Optional[float] = ..., disk_percent: _Optional[float] = ..., rss_bytes: _Optional[int] = ..., heartbeat_seq: _Optional[int] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("operator", "hub_version", "trust_domain")
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    HUB_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRUST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    operator: str
    hub_version: str
    trust_domain: str
    def __init__(self, operator: _Optional[str] = ..., hub_version: _Optional[str] = ..., trust_domain: _Optional[str] = ...) -> None: ...
