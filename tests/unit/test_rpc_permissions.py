"""Every RPC the hub serves has a permission mapping (or is a node or public RPC), and every
action it audits is named in the shared catalogues (edgecommon)."""

import re
from pathlib import Path

from edgecommon.audit_record import AUDIT_PRUNE, HUB_ACTIONS
from edgecommon.pb import audit_pb2, certs_pb2, fleet_pb2, link_pb2, rbac_pb2, replication_pb2
from edgecommon.permissions import BUILTIN_ROLES, PERMISSIONS
from hub import server
from hub.rbac.rpc_permissions import NODE_METHODS, OPERATOR_RULES, SECURITY_EVENTS


def test_every_served_rpc_has_a_permission_mapping() -> None:
    """A new RPC without a mapping fails here (and is refused by the gate at run time)."""
    pool = {
        s.full_name: s
        for module in (audit_pb2, certs_pb2, fleet_pb2, link_pb2, rbac_pb2, replication_pb2)
        for s in module.DESCRIPTOR.services_by_name.values()
    }
    registered = set(re.findall(r"add_(\w+)Servicer_to_server", Path(server.__file__).read_text()))
    served = {f"autonomyops.edge.v1.{name}" for name in registered - {"Health"}}
    assert served <= set(server.SERVICE_NAMES)
    for name in server.SERVICE_NAMES:
        for method in pool[name].methods:
            path = f"/{name}/{method.name}"
            assert path in OPERATOR_RULES or path in NODE_METHODS, f"{path} has no mapping"
    for rule in OPERATOR_RULES.values():
        assert rule.permission is None or rule.permission in PERMISSIONS
    assert set(BUILTIN_ROLES["admin"]) == set(PERMISSIONS)


def test_audited_node_rpcs_are_named_in_the_audit_catalogue() -> None:
    for path, event in SECURITY_EVENTS.items():
        assert event.action in HUB_ACTIONS, f"{path} is audited as {event.action!r}"
    # An operator's request is recorded under its permission; the hub's own actions must not
    # read as one, except the prune, which is both.
    assert set(HUB_ACTIONS) & set(PERMISSIONS) == {AUDIT_PRUNE}
