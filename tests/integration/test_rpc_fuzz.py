"""Every RPC of every service we serve, fuzzed from its descriptor, against real processes.

For each method, requests are generated from the message descriptors (empty, oversized,
NUL and control characters, negative and out-of-range numbers, undecodable bytes) and
sent with no credential, a node credential and an operator credential (on the agent's
Unix socket: as its local caller). Whatever arrives:

- the answer is never UNKNOWN or INTERNAL (an unexpected exception in a servicer);
- a request that does not decode, or holds a string with a control character or beyond
  every length limit, or a 64-bit number beyond SQLite's range, or a non-finite double,
  is answered INVALID_ARGUMENT — whoever sends it, before anything else looks at it;
- the daemons stay up and log no traceback.

The methods come from the service descriptors, so an RPC is covered the day it is added.
"""

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.pki.credentials import CredentialPaths
from edgecommon.pb import (
    agent_pb2,
    audit_pb2,
    certs_pb2,
    fleet_pb2,
    link_pb2,
    rbac_pb2,
    replication_pb2,
)
from edgecommon.peerwire import peer_options
from tests.procs import Fleet, fleet_fixture, free_port

HUB_SERVICES = [
    link_pb2.DESCRIPTOR.services_by_name["Link"],
    fleet_pb2.DESCRIPTOR.services_by_name["Fleet"],
    rbac_pb2.DESCRIPTOR.services_by_name["Rbac"],
    audit_pb2.DESCRIPTOR.services_by_name["Audit"],
    replication_pb2.DESCRIPTOR.services_by_name["Replication"],
    certs_pb2.DESCRIPTOR.services_by_name["Certs"],
]
LOCAL_SERVICES = [
    agent_pb2.DESCRIPTOR.services_by_name["AgentLocal"],
    replication_pb2.DESCRIPTOR.services_by_name["JournalLocal"],
]
PEER_SERVICES = [replication_pb2.DESCRIPTOR.services_by_name["Peer"]]
NODE = "fz-node"
GROUP = "fz"
EXAMPLES = 16

# Values chosen to be wrong in the ways the black-box runs found, beside random ones.
# None of them names a real node or operator of the fleet under test.
STRINGS = ["", "ok", "fleet", "group:fz-x", "node:fz-x", "x" * 5000, "a\x00b", "two\nlines"]
STRINGS += ["y" * 1024, "z" * 1025, "w" * 4097]  # the limits and one beyond
STRINGS += ["\u202eevil", "tab\there", "\x7f", "é-ü"]
BAD_BYTES = [b"\xff\xff\xff\xff\xff", b"\x0a\x05ab", b"\x08"]  # bad tag, short length, no value
FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
INT_RANGE = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
CA_CHANGING = {"Certs.RotateCa", "Certs.RetireOldCa"}
BOUNDARY_REFUSAL = re.compile(
    r"characters long; the limit is|control character U\+|largest value accepted"
    r"|give a finite number|does not decode"
)


def _ints(kind: int) -> st.SearchStrategy[int]:
    low, high = INT_RANGE[kind]
    edges = sorted({low, high, 0, 1, max(low, -1), min(high, 2**63), min(high, 2**63 - 1)})
    return st.sampled_from(edges) | st.integers(low, high)


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_STRING:
        return st.sampled_from(STRINGS) | st.text(max_size=24)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.sampled_from([b"", b"\x00" * 8, b"v" * 70_000]) | st.binary(max_size=32)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        specials = [0.0, -1.0, 1e-9, 9e15, 1e308, -1e308, math.inf, -math.inf, math.nan]
        width = 64 if field.type == FieldDescriptor.TYPE_DOUBLE else 32
        return st.sampled_from(specials) | st.floats(width=width)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values] + [99])
    return _ints(field.type)


def _field_values(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    return _scalar(field)


@st.composite
def messages(draw: st.DrawFn, descriptor: Any, depth: int = 0) -> Message:
    message = GetMessageClass(descriptor)()
    if depth > 2:
        return message
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            keys = _field_values(entry.fields_by_name["key"], depth)
            values = _field_values(entry.fields_by_name["value"], depth)
            target = getattr(message, field.name)
            for key, value in draw(st.dictionaries(keys, values, max_size=2)).items():
                if isinstance(value, Message):
                    target[key].CopyFrom(value)
                else:
                    target[key] = value
        elif field.is_repeated:
            items = draw(st.lists(_field_values(field, depth), max_size=3))
            getattr(message, field.name).extend(items)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, field.name).CopyFrom(draw(_field_values(field, depth)))
        else:
            setattr(message, field.name, draw(_field_values(field, depth)))
    return message


# The documented limits (docs/architecture.md, "The request boundary").
LONG_FIELDS = {"RenewRequest.last_error", "JournalReport.detail", "EnrollRequest.token"}
ECHOED_FIELDS = {"AppendRequest.request_id"}


def unstorable(message: Message) -> str:
    """Independently of the product's code: the first field no one may store, or ""."""
    for field, value in message.ListFields():
        name = f"{field.containing_type.name}.{field.name}"
        limit = 4096 if name in LONG_FIELDS else 1024
        values = list(value.values()) + list(value.keys()) if _is_map(field) else None
        if values is None:
            values = list(value) if field.is_repeated else [value]
        for item in values:
            if isinstance(item, Message):
                found = unstorable(item)
            elif isinstance(item, str):
                found = field.name if len(item) > limit or FORBIDDEN.search(item) else ""
            elif isinstance(item, float):
                found = field.name if not math.isfinite(item) else ""
            elif isinstance(item, int) and not isinstance(item, bool):
                found = field.name if item > 2**63 - 1 and name not in ECHOED_FIELDS else ""
            else:
                found = ""
            if found:
                return found
    return ""


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


@dataclass
class Target:
    """One way into one process: a channel factory per credential."""

    channels: dict[str, grpc.Channel]
    log: Path


def _call(
    channel: grpc.Channel, method: MethodDescriptor, raw: bytes
) -> tuple[grpc.StatusCode, str]:
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.client_streaming:
            call = channel.stream_stream(path)(iter([raw]), timeout=2)
            next(call, None)
            call.cancel()
        elif method.server_streaming:
            call = channel.unary_stream(path)(raw, timeout=2)
            next(call, None)
            call.cancel()
        else:
            channel.unary_unary(path)(raw, timeout=3)
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


@st.composite
def requests(draw: st.DrawFn, method: MethodDescriptor) -> tuple[bytes, str]:
    """Serialized request bytes and why they must be refused ("" if they need not be)."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.sampled_from(BAD_BYTES)), "undecodable"
    message = draw(messages(method.input_type))
    return message.SerializeToString(), unstorable(message)


def _secure(address: str, paths: tuple[Path, Path, Path] | None, ca: Path, name: str = ""):  # type: ignore[no-untyped-def]
    key, cert = (paths[0].read_bytes(), paths[1].read_bytes()) if paths else (None, None)
    creds = grpc.ssl_channel_credentials(ca.read_bytes(), key, cert)
    options = peer_options(name) if name else []
    return grpc.secure_channel(address, creds, options=options)


@pytest.fixture(scope="module")
def targets() -> Iterator[dict[str, Any]]:
    for fleet in fleet_fixture():
        yield from _targets(fleet)


def _targets(fleet: Fleet) -> Iterator[dict[str, Any]]:
    fleet.start_hub()
    fleet.bootstrap_operator()
    peer_port = free_port()
    fleet.start_agent(
        NODE,
        fleet.token(NODE, GROUP),
        extra=f'[replication]\nlisten = "127.0.0.1:{peer_port}"\n',
    )
    fleet.wait_connected(NODE)
    node = CredentialPaths.under(fleet.agent_dir(NODE) / "state")
    ctx = fleet.context
    operator = (ctx / "operator.key", ctx / "operator.crt", ctx / "ca.crt")
    node_files = (node.key, node.cert, node.bundle)
    hub = Target(
        {
            "none": _secure(fleet.enroll, None, ctx / "ca.crt"),
            "node": _secure(fleet.listen, node_files, node.bundle),
            "operator": _secure(fleet.listen, operator, ctx / "ca.crt"),
        },
        fleet.root / "hub" / "hub.log",
    )
    peer_address = f"127.0.0.1:{peer_port}"
    # The Peer port requires a client certificate in the handshake: a caller without one
    # never reaches a handler (test_peer.py covers who may call what).
    peer = Target(
        {"node": _secure(peer_address, node_files, node.bundle, NODE)},
        fleet.agent_dir(NODE) / "agent.log",
    )
    local = Target(
        {"local": grpc.insecure_channel(f"unix:{fleet.socket(NODE)}")},
        fleet.agent_dir(NODE) / "agent.log",
    )
    try:
        yield {"hub": hub, "peer": peer, "local": local, "fleet": fleet}
    finally:
        for target in (hub, peer, local):
            for channel in target.channels.values():
                channel.close()


def _methods(services: list[Any]) -> list[MethodDescriptor]:
    return [m for s in services for m in s.methods]


def _id(method: MethodDescriptor) -> str:
    return f"{method.containing_service.name}.{method.name}"


def _fuzz(targets: dict[str, Any], name: str, method: MethodDescriptor) -> None:
    target: Target = targets[name]
    logged_before = target.log.stat().st_size

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=requests(method), credential=st.sampled_from(sorted(target.channels)))
    def check(request: tuple[bytes, str], credential: str) -> None:
        raw, must_refuse = request
        # A valid CA rotation would leave every credential of this fixture untrusted; what
        # the boundary refuses still goes through (it must change nothing).
        assume(must_refuse or credential != "operator" or _id(method) not in CA_CHANGING)
        code, details = _call(target.channels[credential], method, raw)
        if not must_refuse:  # nothing the boundary may refuse: it must let it through
            assert not BOUNDARY_REFUSAL.search(details), f"{_id(method)}: {details}"
        assert code not in NEVER, f"{_id(method)} as {credential}: {code.name}"
        if must_refuse and not method.client_streaming:
            assert code is grpc.StatusCode.INVALID_ARGUMENT, (
                f"{_id(method)} as {credential} with {must_refuse}: {code.name}"
            )
        if must_refuse and method.client_streaming:
            # Streams check the caller first, then read: a refusal either way.
            assert code in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
            ), f"{_id(method)} as {credential} with {must_refuse}: {code.name}"

    check()
    fleet: Fleet = targets["fleet"]
    assert fleet.hub is not None
    assert fleet.hub.running(), "the hub died"
    assert fleet.agents[NODE].running(), "the agent died"
    with target.log.open("rb") as f:
        f.seek(logged_before)
        text = f.read().decode(errors="replace")
    assert "Traceback" not in text, text[text.index("Traceback") - 1500 :][:5000]


@pytest.mark.parametrize("method", _methods(HUB_SERVICES), ids=_id)
def test_every_hub_rpc_refuses_bad_fields_and_never_fails_internally(
    targets: dict[str, Any], method: MethodDescriptor
) -> None:
    _fuzz(targets, "hub", method)


@pytest.mark.parametrize("method", _methods(LOCAL_SERVICES), ids=_id)
def test_every_local_rpc_refuses_bad_fields_and_never_fails_internally(
    targets: dict[str, Any], method: MethodDescriptor
) -> None:
    _fuzz(targets, "local", method)


@pytest.mark.parametrize("method", _methods(PEER_SERVICES), ids=_id)
def test_every_peer_rpc_refuses_bad_fields_and_never_fails_internally(
    targets: dict[str, Any], method: MethodDescriptor
) -> None:
    _fuzz(targets, "peer", method)
