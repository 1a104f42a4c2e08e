from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RotateCertificateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CertificateState(_message.Message):
    __slots__ = ("certificate_pem", "renewal_state", "next_renewal_unix", "last_renewal_unix", "last_renewal_error", "renewal_failures", "renewals", "detail", "handovers", "handover_failures")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    RENEWAL_STATE_FIELD_NUMBER: _ClassVar[int]
    NEXT_RENEWAL_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_RENEWAL_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_RENEWAL_ERROR_FIELD_NUMBER: _ClassVar[int]
    RENEWAL_FAILURES_FIELD_NUMBER: _ClassVar[int]
    RENEWALS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    HANDOVERS_FIELD_NUMBER: _ClassVar[int]
    HANDOVER_FAILURES_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    renewal_state: str
    next_renewal_unix: float
    last_renewal_unix: float
    last_renewal_error: str
    renewal_failures: int
    renewals: int
    detail: str
    handovers: int
    handover_failures: int
    def __init__(self, certificate_pem: _Optional[bytes] = ..., renewal_state: _Optional[str] = ..., next_renewal_unix: _Optional[float] = ..., last_renewal_unix: _Optional[float] = ..., last_renewal_error: _Optional[str] = ..., renewal_failures: _Optional[int] = ..., renewals: _Optional[int] = ..., detail: _Optional[str] = ..., handovers: _Optional[int] = ..., handover_failures: _Optional[int] = ...) -> None: ...

class LeaderStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Leadership(_message.Message):
    __slots__ = ("is_leader", "epoch", "leader", "time_left_s", "group", "reason")
    IS_LEADER_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    TIME_LEFT_S_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    is_leader: bool
    epoch: int
    leader: str
    time_left_s: float
    group: str
    reason: str
    def __init__(self, is_leader: _Optional[bool] = ..., epoch: _Optional[int] = ..., leader: _Optional[str] = ..., time_left_s: _Optional[float] = ..., group: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PermitRequest(_message.Message):
    __slots__ = ("action", "units", "dry_run", "holder", "leader_only")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    LEADER_ONLY_FIELD_NUMBER: _ClassVar[int]
    action: str
    units: int
    dry_run: bool
    holder: str
    leader_only: bool
    def __init__(self, action: _Optional[str] = ..., units: _Optional[int] = ..., dry_run: _Optional[bool] = ..., holder: _Optional[str] = ..., leader_only: _Optional[bool] = ...) -> None: ...

class PermitDecision(_message.Message):
    __slots__ = ("granted", "reason", "detail", "permit_id", "epoch")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PERMIT_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    reason: str
    detail: str
    permit_id: str
    epoch: int
    def __init__(self, granted: _Optional[bool] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., permit_id: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class WatchPermitRequest(_message.Message):
    __slots__ = ("permit_id",)
    PERMIT_ID_FIELD_NUMBER: _ClassVar[int]
    permit_id: str
    def __init__(self, permit_id: _Optional[str] = ...) -> None: ...

class PermitEvent(_message.Message):
    __slots__ = ("permit_id", "revoked", "reason", "detail")
    PERMIT_ID_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    permit_id: str
    revoked: bool
    reason: str
    detail: str
    def __init__(self, permit_id: _Optional[str] = ..., revoked: _Optional[bool] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ReleasePermitRequest(_message.Message):
    __slots__ = ("permit_id",)
    PERMIT_ID_FIELD_NUMBER: _ClassVar[int]
    permit_id: str
    def __init__(self, permit_id: _Optional[str] = ...) -> None: ...

class ReleasePermitResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: bool
    def __init__(self, released: _Optional[bool] = ...) -> None: ...

class GetEstopRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LatchedStop(_message.Message):
    __slots__ = ("stop_id", "scope", "reason", "operator", "source", "engaged_unix", "latched_unix")
    STOP_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ENGAGED_UNIX_FIELD_NUMBER: _ClassVar[int]
    LATCHED_UNIX_FIELD_NUMBER: _ClassVar[int]
    stop_id: str
    scope: str
    reason: str
    operator: str
    source: str
    engaged_unix: float
    latched_unix: float
    def __init__(self, stop_id: _Optional[str] = ..., scope: _Optional[str] = ..., reason: _Optional[str] = ..., operator: _Optional[str] = ..., source: _Optional[str] = ..., engaged_unix: _Optional[float] = ..., latched_unix: _Optional[float] = ...) -> None: ...

class EstopState(_message.Message):
    __slots__ = ("stopped", "stops", "autonomy_effective", "fleet_switch_enabled", "fleet_switch_source", "node_switch_enabled", "node_switch_source", "node_switch_file", "held_permits", "syncing", "sync_detail")
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    STOPS_FIELD_NUMBER: _ClassVar[int]
    AUTONOMY_EFFECTIVE_FIELD_NUMBER: _ClassVar[int]
    FLEET_SWITCH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    FLEET_SWITCH_SOURCE_FIELD_NUMBER: _ClassVar[int]
    NODE_SWITCH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    NODE_SWITCH_SOURCE_FIELD_NUMBER: _ClassVar[int]
    NODE_SWITCH_FILE_FIELD_NUMBER: _ClassVar[int]
    HELD_PERMITS_FIELD_NUMBER: _ClassVar[int]
    SYNCING_FIELD_NUMBER: _ClassVar[int]
    SYNC_DETAIL_FIELD_NUMBER: _ClassVar[int]
    stopped: bool
    stops: _containers.RepeatedCompositeFieldContainer[LatchedStop]
    autonomy_effective: bool
    fleet_switch_enabled: bool
    fleet_switch_source: str
    node_switch_enabled: bool
    node_switch_source: str
    node_switch_file: str
    held_permits: int
    syncing: bool
    sync_detail: str
    def __init__(self, stopped: _Optional[bool] = ..., stops: _Optional[_Iterable[_Union[LatchedStop, _Mapping]]] = ..., autonomy_effective: _Optional[bool] = ..., fleet_switch_enabled: _Optional[bool] = ..., fleet_switch_source: _Optional[str] = ..., node_switch_enabled: _Optional[bool] = ..., node_switch_source: _Optional[str] = ..., node_switch_file: _Optional[str] = ..., held_permits: _Optional[int] = ..., syncing: _Optional[bool] = ..., sync_detail: _Optional[str] = ...) -> None: ...

class LocalStopRequest(_message.Message):
    __slots__ = ("reason", "operator")
    REASON_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    reason: str
    operator: str
    def __init__(self, reason: _Optional[str] = ..., operator: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentStatus(_message.Message):
    __slots__ = ("node_id", "group", "pid", "agent_version", "python_version", "grpc_version", "hub_address", "hub_state", "hub_state_since_unix", "last_error", "cert_expires_unix", "cert_serial", "started_unix", "next_attempt_unix", "heartbeats_sent", "state_dir", "safety", "certificate", "ready", "not_ready_reason", "statistics_json")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    GRPC_VERSION_FIELD_NUMBER: _ClassVar[int]
    HUB_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HUB_STATE_FIELD_NUMBER: _ClassVar[int]
    HUB_STATE_SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    CERT_EXPIRES_UNIX_FIELD_NUMBER: _ClassVar[int]
    CERT_SERIAL_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_UNIX_FIELD_NUMBER: _ClassVar[int]
    HEARTBEATS_SENT_FIELD_NUMBER: _ClassVar[int]
    STATE_DIR_FIELD_NUMBER: _ClassVar[int]
    SAFETY_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    NOT_READY_REASON_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_JSON_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    group: str
    pid: int
    agent_version: str
    python_version: str
    grpc_version: str
    hub_address: str
    hub_state: str
    hub_state_since_unix: float
    last_error: str
    cert_expires_unix: float
    cert_serial: str
    started_unix: float
    next_attempt_unix: float
    heartbeats_sent: int
    state_dir: str
    safety: EstopState
    certificate: CertificateState
    ready: bool
    not_ready_reason: str
    statistics_json: str
    def __init__(self, node_id: _Optional[str] = ..., group: _Optional[str] = ..., pid: _Optional[int] = ..., agent_version: _Optional[str] = ..., python_version: _Optional[str] = ..., grpc_version: _Optional[str] = ..., hub_address: _Optional[str] = ..., hub_state: _Optional[str] = ..., hub_state_since_unix: _Optional[float] = ..., last_error: _Optional[str] = ..., cert_expires_unix: _Optional[float] = ..., cert_serial: _Optional[str] = ..., started_unix: _Optional[float] = ..., next_attempt_unix: _Optional[float] = ..., heartbeats_sent: _Optional[int] = ..., state_dir: _Optional[str] = ..., safety: _Optional[_Union[EstopState, _Mapping]] = ..., certificate: _Optional[_Union[CertificateState, _Mapping]] = ..., ready: _Optional[bool] = ..., not_ready_reason: _Optional[str] = ..., statistics_json: _Optional[str] = ...) -> None: ...
