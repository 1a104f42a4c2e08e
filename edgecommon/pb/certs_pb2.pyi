from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RenewRequest(_message.Message):
    __slots__ = ("csr_pem", "agent_version", "last_error")
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    agent_version: str
    last_error: str
    def __init__(self, csr_pem: _Optional[bytes] = ..., agent_version: _Optional[str] = ..., last_error: _Optional[str] = ...) -> None: ...

class RenewResponse(_message.Message):
    __slots__ = ("certificate_pem", "ca_bundle_pem", "serial", "not_after_unix")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_UNIX_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    ca_bundle_pem: bytes
    serial: str
    not_after_unix: float
    def __init__(self, certificate_pem: _Optional[bytes] = ..., ca_bundle_pem: _Optional[bytes] = ..., serial: _Optional[str] = ..., not_after_unix: _Optional[float] = ...) -> None: ...

class TrustRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TrustAnswer(_message.Message):
    __slots__ = ("ca_bundle_pem", "signing_ca_fingerprint")
    CA_BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    SIGNING_CA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ca_bundle_pem: bytes
    signing_ca_fingerprint: str
    def __init__(self, ca_bundle_pem: _Optional[bytes] = ..., signing_ca_fingerprint: _Optional[str] = ...) -> None: ...

class ListCertificatesRequest(_message.Message):
    __slots__ = ("expiring_within_s", "kind", "include_expired")
    EXPIRING_WITHIN_S_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    expiring_within_s: float
    kind: str
    include_expired: bool
    def __init__(self, expiring_within_s: _Optional[float] = ..., kind: _Optional[str] = ..., include_expired: _Optional[bool] = ...) -> None: ...

class CertificateInfo(_message.Message):
    __slots__ = ("serial", "kind", "subject_id", "group", "issued_unix", "not_after_unix", "fingerprint", "ca_fingerprint", "revoked", "revoked_unix", "revoke_reason", "revoked_by", "current", "renewal_error")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ISSUED_UNIX_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_UNIX_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    REVOKED_UNIX_FIELD_NUMBER: _ClassVar[int]
    REVOKE_REASON_FIELD_NUMBER: _ClassVar[int]
    REVOKED_BY_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    RENEWAL_ERROR_FIELD_NUMBER: _ClassVar[int]
    serial: str
    kind: str
    subject_id: str
    group: str
    issued_unix: float
    not_after_unix: float
    fingerprint: str
    ca_fingerprint: str
    revoked: bool
    revoked_unix: float
    revoke_reason: str
    revoked_by: str
    current: bool
    renewal_error: str
    def __init__(self, serial: _Optional[str] = ..., kind: _Optional[str] = ..., subject_id: _Optional[str] = ..., group: _Optional[str] = ..., issued_unix: _Optional[float] = ..., not_after_unix: _Optional[float] = ..., fingerprint: _Optional[str] = ..., ca_fingerprint: _Optional[str] = ..., revoked: _Optional[bool] = ..., revoked_unix: _Optional[float] = ..., revoke_reason: _Optional[str] = ..., revoked_by: _Optional[str] = ..., current: _Optional[bool] = ..., renewal_error: _Optional[str] = ...) -> None: ...

class CertificateList(_message.Message):
    __slots__ = ("certificates", "hub_time_unix")
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    HUB_TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    certificates: _containers.RepeatedCompositeFieldContainer[CertificateInfo]
    hub_time_unix: float
    def __init__(self, certificates: _Optional[_Iterable[_Union[CertificateInfo, _Mapping]]] = ..., hub_time_unix: _Optional[float] = ...) -> None: ...

class RevokeRequest(_message.Message):
    __slots__ = ("node_id", "serial", "operator", "reason")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    serial: str
    operator: str
    reason: str
    def __init__(self, node_id: _Optional[str] = ..., serial: _Optional[str] = ..., operator: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeAnswer(_message.Message):
    __slots__ = ("revoked", "streams_closed", "agents_told")
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    STREAMS_CLOSED_FIELD_NUMBER: _ClassVar[int]
    AGENTS_TOLD_FIELD_NUMBER: _ClassVar[int]
    revoked: _containers.RepeatedCompositeFieldContainer[CertificateInfo]
    streams_closed: int
    agents_told: int
    def __init__(self, revoked: _Optional[_Iterable[_Union[CertificateInfo, _Mapping]]] = ..., streams_closed: _Optional[int] = ..., agents_told: _Optional[int] = ...) -> None: ...

class CaStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CaInfo(_message.Message):
    __slots__ = ("fingerprint", "subject", "not_before_unix", "not_after_unix", "signing", "serving", "nodes", "online_nodes", "node_ids")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_UNIX_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_UNIX_FIELD_NUMBER: _ClassVar[int]
    SIGNING_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    ONLINE_NODES_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    subject: str
    not_before_unix: float
    not_after_unix: float
    signing: bool
    serving: bool
    nodes: int
    online_nodes: int
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, fingerprint: _Optional[str] = ..., subject: _Optional[str] = ..., not_before_unix: _Optional[float] = ..., not_after_unix: _Optional[float] = ..., signing: _Optional[bool] = ..., serving: _Optional[bool] = ..., nodes: _Optional[int] = ..., online_nodes: _Optional[int] = ..., node_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CaReport(_message.Message):
    __slots__ = ("cas", "detail")
    CAS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    cas: _containers.RepeatedCompositeFieldContainer[CaInfo]
    detail: str
    def __init__(self, cas: _Optional[_Iterable[_Union[CaInfo, _Mapping]]] = ..., detail: _Optional[str] = ...) -> None: ...

class RotateCaRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RetireOldCaRequest(_message.Message):
    __slots__ = ("force",)
    FORCE_FIELD_NUMBER: _ClassVar[int]
    force: bool
    def __init__(self, force: _Optional[bool] = ...) -> None: ...
