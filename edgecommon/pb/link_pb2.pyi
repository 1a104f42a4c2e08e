from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RenewLeaseRequest(_message.Message):
    __slots__ = ("epoch", "believed_for_s", "previous_late")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    BELIEVED_FOR_S_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_LATE_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    believed_for_s: float
    previous_late: bool
    def __init__(self, epoch: _Optional[int] = ..., believed_for_s: _Optional[float] = ..., previous_late: _Optional[bool] = ...) -> None: ...

class ReleaseLeaseRequest(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ...) -> None: ...

class LeaseAnswer(_message.Message):
    __slots__ = ("verdict", "epoch", "leader", "ttl_s", "renew_interval_s", "renew_deadline_s", "margin_s", "reason")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    RENEW_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    RENEW_DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    MARGIN_S_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    verdict: str
    epoch: int
    leader: str
    ttl_s: float
    renew_interval_s: float
    renew_deadline_s: float
    margin_s: float
    reason: str
    def __init__(self, verdict: _Optional[str] = ..., epoch: _Optional[int] = ..., leader: _Optional[str] = ..., ttl_s: _Optional[float] = ..., renew_interval_s: _Optional[float] = ..., renew_deadline_s: _Optional[float] = ..., margin_s: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class EnrollRequest(_message.Message):
    __slots__ = ("token", "csr_pem", "agent_version")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    token: str
    csr_pem: bytes
    agent_version: str
    def __init__(self, token: _Optional[str] = ..., csr_pem: _Optional[bytes] = ..., agent_version: _Optional[str] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("certificate_pem", "ca_bundle_pem", "subject_id", "group", "kind")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    ca_bundle_pem: bytes
    subject_id: str
    group: str
    kind: str
    def __init__(self, certificate_pem: _Optional[bytes] = ..., ca_bundle_pem: _Optional[bytes] = ..., subject_id: _Optional[str] = ..., group: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("register", "heartbeat", "estop_ack", "fleet_switch_ack")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    ESTOP_ACK_FIELD_NUMBER: _ClassVar[int]
    FLEET_SWITCH_ACK_FIELD_NUMBER: _ClassVar[int]
    register: Register
    heartbeat: Heartbeat
    estop_ack: EstopAck
    fleet_switch_ack: FleetSwitchAck
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., estop_ack: _Optional[_Union[EstopAck, _Mapping]] = ..., fleet_switch_ack: _Optional[_Union[FleetSwitchAck, _Mapping]] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("agent_version", "labels", "started_unix", "hostname", "latched_stop_ids", "fleet_switch_revision", "peer_address")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    LATCHED_STOP_IDS_FIELD_NUMBER: _ClassVar[int]
    FLEET_SWITCH_REVISION_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    agent_version: str
    labels: _containers.ScalarMap[str, str]
    started_unix: float
    hostname: str
    latched_stop_ids: _containers.RepeatedScalarFieldContainer[str]
    fleet_switch_revision: int
    peer_address: str
    def __init__(self, agent_version: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., started_unix: _Optional[float] = ..., hostname: _Optional[str] = ..., latched_stop_ids: _Optional[_Iterable[str]] = ..., fleet_switch_revision: _Optional[int] = ..., peer_address: _Optional[str] = ...) -> None: ...

class EstopAck(_message.Message):
    __slots__ = ("stop_id", "released", "latched_unix")
    STOP_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    LATCHED_UNIX_FIELD_NUMBER: _ClassVar[int]
    stop_id: str
    released: bool
    latched_unix: float
    def __init__(self, stop_id: _Optional[str] = ..., released: _Optional[bool] = ..., latched_unix: _Optional[float] = ...) -> None: ...

class FleetSwitchAck(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("seq", "agent_version", "uptime_s", "cpu_percent", "memory_percent", "disk_percent", "rss_bytes", "autonomy_effective", "node_switch_enabled", "node_switch_source", "fleet_switch_revision", "local_stop_ids", "held_permits", "journal")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    DISK_PERCENT_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    AUTONOMY_EFFECTIVE_FIELD_NUMBER: _ClassVar[int]
    NODE_SWITCH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    NODE_SWITCH_SOURCE_FIELD_NUMBER: _ClassVar[int]
    FLEET_SWITCH_REVISION_FIELD_NUMBER: _ClassVar[int]
    LOCAL_STOP_IDS_FIELD_NUMBER: _ClassVar[int]
    HELD_PERMITS_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    seq: int
    agent_version: str
    uptime_s: float
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    rss_bytes: int
    autonomy_effective: bool
    node_switch_enabled: bool
    node_switch_source: str
    fleet_switch_revision: int
    local_stop_ids: _containers.RepeatedScalarFieldContainer[str]
    held_permits: int
    journal: JournalReport
    def __init__(self, seq: _Optional[int] = ..., agent_version: _Optional[str] = ..., uptime_s: _Optional[float] = ..., cpu_percent: _Optional[float] = ..., memory_percent: _Optional[float] = ..., disk_percent: _Optional[float] = ..., rss_bytes: _Optional[int] = ..., autonomy_effective: _Optional[bool] = ..., node_switch_enabled: _Optional[bool] = ..., node_switch_source: _Optional[str] = ..., fleet_switch_revision: _Optional[int] = ..., local_stop_ids: _Optional[_Iterable[str]] = ..., held_permits: _Optional[int] = ..., journal: _Optional[_Union[JournalReport, _Mapping]] = ...) -> None: ...

class JournalReport(_message.Message):
    __slots__ = ("role", "last_index", "last_epoch", "commit_index", "epoch", "diverged_at", "detail", "replicas", "sync_confirmed", "bad_peer", "peer_address", "plan_revision", "rewinds")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DIVERGED_AT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SYNC_CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    BAD_PEER_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PLAN_REVISION_FIELD_NUMBER: _ClassVar[int]
    REWINDS_FIELD_NUMBER: _ClassVar[int]
    role: str
    last_index: int
    last_epoch: int
    commit_index: int
    epoch: int
    diverged_at: int
    detail: str
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaView]
    sync_confirmed: _containers.RepeatedScalarFieldContainer[str]
    bad_peer: str
    peer_address: str
    plan_revision: int
    rewinds: int
    def __init__(self, role: _Optional[str] = ..., last_index: _Optional[int] = ..., last_epoch: _Optional[int] = ..., commit_index: _Optional[int] = ..., epoch: _Optional[int] = ..., diverged_at: _Optional[int] = ..., detail: _Optional[str] = ..., replicas: _Optional[_Iterable[_Union[ReplicaView, _Mapping]]] = ..., sync_confirmed: _Optional[_Iterable[str]] = ..., bad_peer: _Optional[str] = ..., peer_address: _Optional[str] = ..., plan_revision: _Optional[int] = ..., rewinds: _Optional[int] = ...) -> None: ...

class ReplicaView(_message.Message):
    __slots__ = ("node_id", "durable_index", "lag_entries", "lag_s", "last_pull_age_s")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DURABLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAG_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LAG_S_FIELD_NUMBER: _ClassVar[int]
    LAST_PULL_AGE_S_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    durable_index: int
    lag_entries: int
    lag_s: float
    last_pull_age_s: float
    def __init__(self, node_id: _Optional[str] = ..., durable_index: _Optional[int] = ..., lag_entries: _Optional[int] = ..., lag_s: _Optional[float] = ..., last_pull_age_s: _Optional[float] = ...) -> None: ...

class HubMessage(_message.Message):
    __slots__ = ("registered", "backoff", "estop", "estop_release", "fleet_switch", "lease_nudge", "replication", "revocations")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_FIELD_NUMBER: _ClassVar[int]
    ESTOP_FIELD_NUMBER: _ClassVar[int]
    ESTOP_RELEASE_FIELD_NUMBER: _ClassVar[int]
    FLEET_SWITCH_FIELD_NUMBER: _ClassVar[int]
    LEASE_NUDGE_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_FIELD_NUMBER: _ClassVar[int]
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    registered: Registered
    backoff: Backoff
    estop: EstopCommand
    estop_release: EstopRelease
    fleet_switch: FleetSwitch
    lease_nudge: LeaseNudge
    replication: ReplicationPlan
    revocations: Revocations
    def __init__(self, registered: _Optional[_Union[Registered, _Mapping]] = ..., backoff: _Optional[_Union[Backoff, _Mapping]] = ..., estop: _Optional[_Union[EstopCommand, _Mapping]] = ..., estop_release: _Optional[_Union[EstopRelease, _Mapping]] = ..., fleet_switch: _Optional[_Union[FleetSwitch, _Mapping]] = ..., lease_nudge: _Optional[_Union[LeaseNudge, _Mapping]] = ..., replication: _Optional[_Union[ReplicationPlan, _Mapping]] = ..., revocations: _Optional[_Union[Revocations, _Mapping]] = ...) -> None: ...

class Revocations(_message.Message):
    __slots__ = ("serials",)
    SERIALS_FIELD_NUMBER: _ClassVar[int]
    serials: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, serials: _Optional[_Iterable[str]] = ...) -> None: ...

class ReplicationPlan(_message.Message):
    __slots__ = ("group", "leader", "leader_peer_address", "epoch", "sync_set", "joining", "min_sync", "strict", "revision")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SYNC_SET_FIELD_NUMBER: _ClassVar[int]
    JOINING_FIELD_NUMBER: _ClassVar[int]
    MIN_SYNC_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    group: str
    leader: str
    leader_peer_address: str
    epoch: int
    sync_set: _containers.RepeatedScalarFieldContainer[str]
    joining: _containers.RepeatedScalarFieldContainer[str]
    min_sync: int
    strict: bool
    revision: int
    def __init__(self, group: _Optional[str] = ..., leader: _Optional[str] = ..., leader_peer_address: _Optional[str] = ..., epoch: _Optional[int] = ..., sync_set: _Optional[_Iterable[str]] = ..., joining: _Optional[_Iterable[str]] = ..., min_sync: _Optional[int] = ..., strict: _Optional[bool] = ..., revision: _Optional[int] = ...) -> None: ...

class LeaseNudge(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("node_id", "group", "heartbeat_interval_s", "hub_time_unix", "stops", "releases", "fleet_switch", "revocations")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    HUB_TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    STOPS_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    FLEET_SWITCH_FIELD_NUMBER: _ClassVar[int]
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    group: str
    heartbeat_interval_s: float
    hub_time_unix: float
    stops: _containers.RepeatedCompositeFieldContainer[EstopCommand]
    releases: _containers.RepeatedCompositeFieldContainer[EstopRelease]
    fleet_switch: FleetSwitch
    revocations: Revocations
    def __init__(self, node_id: _Optional[str] = ..., group: _Optional[str] = ..., heartbeat_interval_s: _Optional[float] = ..., hub_time_unix: _Optional[float] = ..., stops: _Optional[_Iterable[_Union[EstopCommand, _Mapping]]] = ..., releases: _Optional[_Iterable[_Union[EstopRelease, _Mapping]]] = ..., fleet_switch: _Optional[_Union[FleetSwitch, _Mapping]] = ..., revocations: _Optional[_Union[Revocations, _Mapping]] = ...) -> None: ...

class EstopCommand(_message.Message):
    __slots__ = ("stop_id", "scope", "reason", "operator", "engaged_unix")
    STOP_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    ENGAGED_UNIX_FIELD_NUMBER: _ClassVar[int]
    stop_id: str
    scope: str
    reason: str
    operator: str
    engaged_unix: float
    def __init__(self, stop_id: _Optional[str] = ..., scope: _Optional[str] = ..., reason: _Optional[str] = ..., operator: _Optional[str] = ..., engaged_unix: _Optional[float] = ...) -> None: ...

class EstopRelease(_message.Message):
    __slots__ = ("stop_id", "reason", "operator")
    STOP_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    stop_id: str
    reason: str
    operator: str
    def __init__(self, stop_id: _Optional[str] = ..., reason: _Optional[str] = ..., operator: _Optional[str] = ...) -> None: ...

class FleetSwitch(_message.Message):
    __slots__ = ("enabled", "source", "revision")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    source: str
    revision: int
    def __init__(self, enabled: _Optional[bool] = ..., source: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class Backoff(_message.Message):
    __slots__ = ("retry_after_s", "reason")
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    retry_after_s: float
    reason: str
    def __init__(self, retry_after_s: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...
