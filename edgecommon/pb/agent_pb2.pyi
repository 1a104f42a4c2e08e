from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentStatus(_message.Message):
    __slots__ = ("node_id", "group", "pid", "agent_version", "python_version", "grpc_version", "hub_address", "hub_state", "hub_state_since_unix", "last_error", "cert_expires_unix", "cert_serial", "started_unix", "next_attempt_unix", "heartbeats_sent", "state_dir")
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
    def __init__(self, node_id: _Optional[str] = ..., group: _Optional[str] = ..., pid: _Optional[int] = ..., agent_version: _Optional[str] = ..., python_version: _Optional[str] = ..., grpc_version: _Optional[str] = ..., hub_address: _Optional[str] = ..., hub_state: _Optional[str] = ..., hub_state_since_unix: _Optional[float] = ..., last_error: _Optional[str] = ..., cert_expires_unix: _Optional[float] = ..., cert_serial: _Optional[str] = ..., started_unix: _Optional[float] = ..., next_attempt_unix: _Optional[float] = ..., heartbeats_sent: _Optional[int] = ..., state_dir: _Optional[str] = ...) -> None: ...
