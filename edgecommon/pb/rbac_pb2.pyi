from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(_message.Message):
    __slots__ = ("name", "description", "permissions", "builtin", "assignments")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    builtin: bool
    assignments: int
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ..., builtin: _Optional[bool] = ..., assignments: _Optional[int] = ...) -> None: ...

class ListRolesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RoleList(_message.Message):
    __slots__ = ("roles",)
    ROLES_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedCompositeFieldContainer[Role]
    def __init__(self, roles: _Optional[_Iterable[_Union[Role, _Mapping]]] = ...) -> None: ...

class GetRoleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CreateRoleRequest(_message.Message):
    __slots__ = ("name", "description", "permissions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteRoleRequest(_message.Message):
    __slots__ = ("name", "force")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    force: bool
    def __init__(self, name: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class DeleteRoleResponse(_message.Message):
    __slots__ = ("name", "assignments_removed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    name: str
    assignments_removed: int
    def __init__(self, name: _Optional[str] = ..., assignments_removed: _Optional[int] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("operator", "role", "scope")
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    operator: str
    role: str
    scope: str
    def __init__(self, operator: _Optional[str] = ..., role: _Optional[str] = ..., scope: _Optional[str] = ...) -> None: ...

class ListAssignmentsRequest(_message.Message):
    __slots__ = ("operator",)
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    operator: str
    def __init__(self, operator: _Optional[str] = ...) -> None: ...

class AssignmentList(_message.Message):
    __slots__ = ("assignments",)
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[Assignment]
    def __init__(self, assignments: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ...) -> None: ...

class AssignRequest(_message.Message):
    __slots__ = ("operator", "role", "scope")
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    operator: str
    role: str
    scope: str
    def __init__(self, operator: _Optional[str] = ..., role: _Optional[str] = ..., scope: _Optional[str] = ...) -> None: ...

class AssignResponse(_message.Message):
    __slots__ = ("assignment", "changed")
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    assignment: Assignment
    changed: bool
    def __init__(self, assignment: _Optional[_Union[Assignment, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class CheckRequest(_message.Message):
    __slots__ = ("operator", "permission", "scope")
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    operator: str
    permission: str
    scope: str
    def __init__(self, operator: _Optional[str] = ..., permission: _Optional[str] = ..., scope: _Optional[str] = ...) -> None: ...

class CheckDecision(_message.Message):
    __slots__ = ("allowed", "operator", "permission", "scope", "reason", "decided_by", "enforcing")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    ENFORCING_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    operator: str
    permission: str
    scope: str
    reason: str
    decided_by: Assignment
    enforcing: bool
    def __init__(self, allowed: _Optional[bool] = ..., operator: _Optional[str] = ..., permission: _Optional[str] = ..., scope: _Optional[str] = ..., reason: _Optional[str] = ..., decided_by: _Optional[_Union[Assignment, _Mapping]] = ..., enforcing: _Optional[bool] = ...) -> None: ...

class RbacStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RbacStatusReport(_message.Message):
    __slots__ = ("enforcing", "source", "directory", "roles", "assignments", "loaded_unix", "last_error", "allowed", "denied", "bypassed", "recent_denials")
    ENFORCING_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    LOADED_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    DENIED_FIELD_NUMBER: _ClassVar[int]
    BYPASSED_FIELD_NUMBER: _ClassVar[int]
    RECENT_DENIALS_FIELD_NUMBER: _ClassVar[int]
    enforcing: bool
    source: str
    directory: str
    roles: int
    assignments: int
    loaded_unix: float
    last_error: str
    allowed: int
    denied: int
    bypassed: int
    recent_denials: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, enforcing: _Optional[bool] = ..., source: _Optional[str] = ..., directory: _Optional[str] = ..., roles: _Optional[int] = ..., assignments: _Optional[int] = ..., loaded_unix: _Optional[float] = ..., last_error: _Optional[str] = ..., allowed: _Optional[int] = ..., denied: _Optional[int] = ..., bypassed: _Optional[int] = ..., recent_denials: _Optional[_Iterable[str]] = ...) -> None: ...
