"""The Rbac service: roles, assignments and checks. The gate has already decided that the
caller may call these; this module only validates and applies."""

from collections.abc import Callable

import grpc

from edgecommon.errors import InvalidArgument, NotFound
from edgecommon.identity import Kind, name_problem
from edgecommon.pb import rbac_pb2, rbac_pb2_grpc
from edgecommon.permissions import require_permission
from edgecommon.rpc import handle_errors
from edgecommon.scope import ScopeKind
from hub.pki.auth import PeerVerifier
from hub.rbac.gate import Gate
from hub.rbac.policy import (
    Assignment,
    Policy,
    Role,
    check,
    new_assignment,
    new_role,
)


def role_message(role: Role, policy: Policy) -> rbac_pb2.Role:
    return rbac_pb2.Role(
        name=role.name,
        description=role.description,
        permissions=sorted(role.permissions),
        builtin=role.builtin,
        assignments=sum(1 for a in policy.assignments if a.role == role.name),
    )


def assignment_message(a: Assignment) -> rbac_pb2.Assignment:
    return rbac_pb2.Assignment(operator=a.operator, role=a.role, scope=str(a.scope))


class RbacService(rbac_pb2_grpc.RbacServicer):
    def __init__(
        self, gate: Gate, verifier: PeerVerifier, known_groups: Callable[[], set[str]]
    ) -> None:
        self.gate = gate
        self.source = gate.rbac
        self.verifier = verifier
        self.known_groups = known_groups

    @handle_errors
    async def ListRoles(
        self, request: rbac_pb2.ListRolesRequest, context: grpc.aio.ServicerContext
    ) -> rbac_pb2.RoleList:
        policy = self.source.policy
        roles = sorted(policy.roles.values(), key=lambda r: (not r.builtin, r.name))
        return rbac_pb2.RoleList(roles=[role_message(r, policy) for r in roles])

    @handle_errors
    async def GetRole(
        self, request: rbac_pb2.GetRoleRequest, context: grpc.aio.ServicerContext
    ) -> rbac_pb2.Role:
        policy = self.source.policy
        role = policy.roles.get(request.name)
        if role is None:
            raise NotFound(f"no role {request.name!r}; 'edgectl rbac role list' shows the roles")
        return role_message(role, policy)

    @handle_errors
    async def CreateRole(
        self, request: rbac_pb2.CreateRoleRequest, context: grpc.aio.ServicerContext
    ) -> rbac_pb2.Role:
        _, me = self.verifier.require(context, Kind.OPERATOR)
        role = new_role(request.name, request.permissions, request.description)
        await self.source.create_role(role, me.name)
        return role_message(self.source.policy.roles[role.name], self.source.policy)

    @handle_errors
    async def DeleteRole(
        self, request: rbac_pb2.DeleteRoleRequest, context: grpc.aio.ServicerContext
    ) -> rbac_pb2.DeleteRoleResponse:
        removed = await self.source.delete_role(request.name, force=request.force)
        return rbac_pb2.DeleteRoleResponse(name=request.name, assignments_removed=removed)

    @handle_errors
    async def ListAssignments(
        self, request: rbac_pb2.ListAssignmentsRequest, context: grpc.aio.ServicerContext
    ) -> rbac_pb2.AssignmentList:
        chosen = [
            a
            for a in self.source.policy.assignments
            if not request.operator or a.operator == request.operator
        ]
        return rbac_pb2.AssignmentList(assignments=[assignment_message(a) for a in chosen])

    @handle_errors
    async def Assign(
        self, request: rbac_pb2.AssignRequest, context: grpc.aio.ServicerContext
    ) -> rbac_pb2.AssignResponse:
        _, me = self.verifier.require(context, Kind.OPERATOR)
        assignment = self._assignment(request)
        if assignment.scope.kind is ScopeKind.GROUP and (
            assignment.scope.name not in self.known_groups()
        ):
            raise InvalidArgument(
                f"scope {assignment.scope}: no enrolled node is in group {assignment.scope.name}; "
                "'edgectl fleet status' lists the groups"
            )
        changed = await self.source.assign(assignment, me.name)
        return rbac_pb2.AssignResponse(assignment=assignment_message(assignment), changed=changed)

    @handle_errors
    async def Unassign(
        self, request: rbac_pb2.AssignRequest, context: grpc.aio.ServicerContext
    ) -> rbac_pb2.AssignResponse:
        assignment = self._assignment(request)
        await self.source.unassign(assignment)
        return rbac_pb2.AssignResponse(assignment=assignment_message(assignment), changed=True)

    @handle_errors
    async def Check(
        self, request: rbac_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> rbac_pb2.CheckDecision:
        if problem := name_problem("operator", request.operator):
            raise InvalidArgument(problem)
        permission = require_permission(request.permission)
        target = self.gate.target_of(request.scope or "fleet")
        decision = check(self.source.policy, request.operator, permission, target)
        answer = rbac_pb2.CheckDecision(
            allowed=decision.allowed,
            operator=decision.operator,
            permission=permission,
            scope=str(decision.target),
            reason=decision.reason,
            enforcing=self.gate.enforcing,
        )
        if decision.assignment is not None:
            answer.decided_by.CopyFrom(assignment_message(decision.assignment))
        return answer

    @handle_errors
    async def RbacStatus(
        self, request: rbac_pb2.RbacStatusRequest, context: grpc.aio.ServicerContext
    ) -> rbac_pb2.RbacStatusReport:
        s = self.source.statistics()
        g = self.gate.stats
        return rbac_pb2.RbacStatusReport(
            enforcing=g.enforcing,
            source=s.source,
            directory=s.directory,
            roles=s.roles,
            assignments=s.assignments,
            loaded_unix=s.loaded_unix,
            last_error=s.last_error,
            allowed=g.allowed,
            denied=g.denied,
            bypassed=g.bypassed,
            recent_denials=g.recent_denials,
        )

    def _assignment(self, request: rbac_pb2.AssignRequest) -> Assignment:
        return new_assignment(self.source.policy, request.operator, request.role, request.scope)
