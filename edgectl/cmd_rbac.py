"""edgectl rbac: roles, assignments and permission checks on the hub.

Roles are sets of permissions named after actions (`edgectl rbac permissions`); `viewer`,
`operator` and `admin` are built in. Assignments give an operator a role fleet-wide or
for one group. When the hub reads RBAC from files (AUTONOMY_RBAC_DIR) changes are made
there, and these commands only read.
"""

import argparse
from typing import Any

from edgecommon.cli import exitcodes
from edgecommon.cli.confirm import confirm
from edgecommon.cli.output import Column, iso
from edgecommon.pb import rbac_pb2
from edgecommon.permissions import BUILTIN_ROLES, PERMISSIONS, assignment_scope, require_permission
from edgectl.app import App
from edgectl.clients import rbac


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rbac", help="roles, assignments and permission checks")
    rsub = p.add_subparsers(dest="rbac_command", required=True, metavar="COMMAND")

    perms = rsub.add_parser("permissions", help="every permission and the built-in roles")
    perms.set_defaults(func=permissions_cmd)

    role = rsub.add_parser("role", help="create, list, show, delete roles")
    osub = role.add_subparsers(dest="role_command", required=True, metavar="COMMAND")
    create = osub.add_parser("create", help="a custom role from permissions")
    create.add_argument("name")
    create.add_argument(
        "--permission",
        "-p",
        action="append",
        required=True,
        metavar="P",
        help="a permission (repeat, or separate with commas)",
    )
    create.add_argument("--description", default="")
    create.set_defaults(func=role_create)
    osub.add_parser("list", help="every role").set_defaults(func=role_list)
    show = osub.add_parser("show", help="one role's permissions and assignments")
    show.add_argument("name")
    show.set_defaults(func=role_show)
    delete = osub.add_parser("delete", help="delete a custom role")
    delete.add_argument("name")
    delete.add_argument(
        "--force", action="store_true", help="no confirmation; also remove its assignments"
    )
    delete.set_defaults(func=role_delete)

    for verb, func, text in (
        ("assign", assign_cmd, "give OPERATOR the role, fleet-wide or for one group"),
        ("unassign", unassign_cmd, "take the role (on that scope) away from OPERATOR"),
    ):
        cmd = rsub.add_parser(verb, help=text)
        cmd.add_argument("operator")
        cmd.add_argument("role")
        cmd.add_argument("--scope", default="fleet", help="fleet (default) or group:G")
        cmd.set_defaults(func=func)

    listing = rsub.add_parser("assignments", help="who holds which role where")
    listing.add_argument("--operator", dest="who", default="", help="one operator only")
    listing.set_defaults(func=assignments_cmd)

    chk = rsub.add_parser("check", help="would OPERATOR be allowed PERMISSION, and why")
    chk.add_argument("operator")
    chk.add_argument("permission")
    chk.add_argument("--scope", default="fleet", help="fleet (default), group:G or node:N")
    chk.set_defaults(func=check_cmd)

    rsub.add_parser("status", help="enforcement, source, reload errors").set_defaults(
        func=status_cmd
    )


def _permissions(values: list[str]) -> list[str]:
    names = [p.strip() for v in values for p in v.split(",") if p.strip()]
    return [require_permission(p) for p in names]


def role_data(role: rbac_pb2.Role) -> dict[str, Any]:
    return {
        "name": role.name,
        "description": role.description,
        "permissions": list(role.permissions),
        "builtin": role.builtin,
        "assignments": role.assignments,
    }


def assignment_data(a: rbac_pb2.Assignment) -> dict[str, str]:
    return {"operator": a.operator, "role": a.role, "scope": a.scope}


async def permissions_cmd(app: App) -> int:
    rows = [
        {
            "permission": name,
            "roles": ",".join(r for r, perms in BUILTIN_ROLES.items() if name in perms),
            "description": text,
        }
        for name, text in PERMISSIONS.items()
    ]
    app.out.table(
        {"permissions": rows},
        rows,
        [
            Column("PERMISSION", "permission"),
            Column("BUILT-IN ROLES", "roles"),
            Column("ALLOWS", "description"),
        ],
    )
    return exitcodes.OK


async def role_create(app: App) -> int:
    permissions = _permissions(app.args.permission)
    context = app.context
    async with rbac(context, app.hub(context), app.timeout_s) as (stub, call):
        role = await call(
            stub.CreateRole,
            rbac_pb2.CreateRoleRequest(
                name=app.args.name, description=app.args.description, permissions=permissions
            ),
        )
    app.out.text(role_data(role), f"role {role.name} created: {', '.join(role.permissions)}")
    return exitcodes.OK


async def role_list(app: App) -> int:
    context = app.context
    async with rbac(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(stub.ListRoles, rbac_pb2.ListRolesRequest())
    rows = [
        {**role_data(r), "kind": "built-in" if r.builtin else "custom", "count": len(r.permissions)}
        for r in answer.roles
    ]
    app.out.table(
        {"roles": [role_data(r) for r in answer.roles]},
        rows,
        [
            Column("ROLE", "name"),
            Column("KIND", "kind"),
            Column("PERMISSIONS", "count"),
            Column("ASSIGNED", "assignments"),
            Column("DESCRIPTION", "description"),
        ],
    )
    return exitcodes.OK


async def role_show(app: App) -> int:
    context = app.context
    async with rbac(context, app.hub(context), app.timeout_s) as (stub, call):
        role = await call(stub.GetRole, rbac_pb2.GetRoleRequest(name=app.args.name))
        holders = await call(stub.ListAssignments, rbac_pb2.ListAssignmentsRequest())
    data = role_data(role)
    data["assigned_to"] = [assignment_data(a) for a in holders.assignments if a.role == role.name]
    app.out.record(
        data,
        [
            ("role", role.name),
            ("kind", "built-in" if role.builtin else "custom"),
            ("description", role.description),
            ("permissions", ", ".join(role.permissions)),
            (
                "assigned to",
                ", ".join(f"{a['operator']} on {a['scope']}" for a in data["assigned_to"]),
            ),
        ],
    )
    return exitcodes.OK


async def role_delete(app: App) -> int:
    name = app.args.name
    confirm(
        app.args.force,
        f"delete role {name}",
        f"Delete role {name}? Type {name!r} to confirm: ",
        name,
        "nothing deleted",
    )
    context = app.context
    async with rbac(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(
            stub.DeleteRole, rbac_pb2.DeleteRoleRequest(name=app.args.name, force=app.args.force)
        )
    data = {"name": answer.name, "assignments_removed": answer.assignments_removed}
    extra = f" and {answer.assignments_removed} assignment(s)" if answer.assignments_removed else ""
    app.out.text(data, f"role {answer.name} deleted{extra}")
    return exitcodes.OK


def _assign_request(app: App) -> rbac_pb2.AssignRequest:
    scope = assignment_scope(app.args.scope)
    return rbac_pb2.AssignRequest(operator=app.args.operator, role=app.args.role, scope=str(scope))


async def assign_cmd(app: App) -> int:
    request = _assign_request(app)
    context = app.context
    async with rbac(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(stub.Assign, request)
    a = answer.assignment
    state = "assigned" if answer.changed else "already assigned"
    app.out.text(
        {**assignment_data(a), "changed": answer.changed},
        f"role {a.role} {state} to {a.operator} on {a.scope}",
    )
    return exitcodes.OK


async def unassign_cmd(app: App) -> int:
    request = _assign_request(app)
    context = app.context
    async with rbac(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(stub.Unassign, request)
    a = answer.assignment
    app.out.text(
        {**assignment_data(a), "changed": True},
        f"role {a.role} on {a.scope} taken from {a.operator}",
    )
    return exitcodes.OK


async def assignments_cmd(app: App) -> int:
    context = app.context
    async with rbac(context, app.hub(context), app.timeout_s) as (stub, call):
        answer = await call(
            stub.ListAssignments, rbac_pb2.ListAssignmentsRequest(operator=app.args.who)
        )
    rows = [assignment_data(a) for a in answer.assignments]
    app.out.table(
        {"assignments": rows},
        rows,
        [Column("OPERATOR", "operator"), Column("ROLE", "role"), Column("SCOPE", "scope")],
    )
    return exitcodes.OK


async def check_cmd(app: App) -> int:
    permission = require_permission(app.args.permission)
    context = app.context
    async with rbac(context, app.hub(context), app.timeout_s) as (stub, call):
        d = await call(
            stub.Check,
            rbac_pb2.CheckRequest(
                operator=app.args.operator, permission=permission, scope=app.args.scope
            ),
        )
    data = {
        "allowed": d.allowed,
        "operator": d.operator,
        "permission": d.permission,
        "scope": d.scope,
        "reason": d.reason,
        "decided_by": assignment_data(d.decided_by) if d.HasField("decided_by") else None,
        "enforcing": d.enforcing,
    }
    verdict = "ALLOW" if d.allowed else "DENY"
    message = f"{verdict}: {d.operator} {d.permission} on {d.scope}: {d.reason}"
    if not d.enforcing:
        message += "\n(RBAC enforcement is OFF on the hub: every request is let through)"
    app.out.text(data, message)
    return exitcodes.OK if d.allowed else exitcodes.DENIED


async def status_cmd(app: App) -> int:
    context = app.context
    async with rbac(context, app.hub(context), app.timeout_s) as (stub, call):
        s = await call(stub.RbacStatus, rbac_pb2.RbacStatusRequest())
    data = {
        "enforcing": s.enforcing,
        "source": s.source,
        "directory": s.directory or None,
        "roles": s.roles,
        "assignments": s.assignments,
        "loaded": iso(s.loaded_unix),
        "last_error": s.last_error or None,
        "allowed": s.allowed,
        "denied": s.denied,
        "bypassed": s.bypassed,
        "recent_denials": list(s.recent_denials),
    }
    enforcement = "on" if s.enforcing else "OFF (break-glass: requests are let through)"
    source = f"files in {s.directory}" if s.directory else "the hub store"
    lines = [
        ("enforcement", enforcement),
        ("source", source),
        ("loaded", data["loaded"]),
        ("roles", s.roles),
        ("assignments", s.assignments),
        ("requests", f"{s.allowed} allowed, {s.denied} denied, {s.bypassed} bypassed"),
    ]
    if s.last_error:
        lines.append(("REJECTED EDIT", f"{s.last_error} (the last good set is in force)"))
    lines.extend(("denied", line) for line in s.recent_denials[-5:])
    app.out.record(data, lines)
    return exitcodes.OK
