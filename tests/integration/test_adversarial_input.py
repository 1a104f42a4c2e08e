"""Requests nobody here wrote: what a black-box run sent, each answered clearly, with no
effect, no traceback and nothing for the audit log that someone without a credential can
fill. Real hub and agent processes, real mTLS; raw gRPC calls where edgectl would refuse
the input itself."""

import json
import math
import re
import time
import urllib.error
import urllib.request
from dataclasses import replace

import grpc
import pytest

from edgecommon import tokens
from edgecommon.pb import (
    agent_pb2,
    agent_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    fleet_pb2,
    fleet_pb2_grpc,
    link_pb2,
    rbac_pb2,
    rbac_pb2_grpc,
    replication_pb2,
    replication_pb2_grpc,
)
from tests.procs import Fleet, wait_until


def operator_channel(fleet: Fleet) -> grpc.Channel:
    ctx = fleet.context
    creds = grpc.ssl_channel_credentials(
        (ctx / "ca.crt").read_bytes(),
        (ctx / "operator.key").read_bytes(),
        (ctx / "operator.crt").read_bytes(),
    )
    return grpc.secure_channel(fleet.listen, creds)


def anonymous_channel(fleet: Fleet) -> grpc.Channel:
    """TLS without a client certificate, on the enrollment port."""
    creds = grpc.ssl_channel_credentials((fleet.context / "ca.crt").read_bytes())
    return grpc.secure_channel(fleet.enroll, creds)


def code_and_details(call, request) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    try:
        call(request, timeout=10)
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


def audit_events(fleet: Fleet, *filters: str) -> list[dict]:
    result = fleet.edgectl("-o", "json", "audit", "query", "--limit", "1000", *filters)
    assert result.code == 0, result.stderr
    return list(result.json["events"])


@pytest.fixture
def node_fleet(running_fleet: Fleet) -> Fleet:
    running_fleet.start_agent("node-a", running_fleet.token("node-a"))
    running_fleet.wait_connected("node-a")
    return running_fleet


def test_estop_with_a_nul_in_its_reason_is_refused_before_any_effect(node_fleet: Fleet) -> None:
    """Defect: EngageEstop(reason="covert\\x00stop") latched on a node with no audit event."""
    fleet = node_fleet
    with operator_channel(fleet) as channel:
        stub = fleet_pb2_grpc.FleetStub(channel)
        code, details = code_and_details(
            stub.EngageEstop, fleet_pb2.EngageEstopRequest(scope="fleet", reason="covert\x00stop")
        )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "reason" in details
    assert "U+0000" in details
    assert fleet.edgectl("-o", "json", "estop", "status").json["stops"] == []
    local = fleet.edgectl(
        "-o", "json", "estop", "status", "--local", "--socket", str(fleet.socket("node-a"))
    ).json
    assert not local["stopped"]
    assert "AUDIT EVENT NOT RECORDED" not in fleet.hub.output()


@pytest.mark.parametrize(
    ("service", "method", "request_", "field"),
    [
        ("fleet", "GetNode", fleet_pb2.GetNodeRequest(node_id="node\x00a"), "node_id"),
        ("fleet", "GetNode", fleet_pb2.GetNodeRequest(node_id="n" * 5000), "node_id"),
        (
            "fleet",
            "CreateJoinToken",
            fleet_pb2.CreateJoinTokenRequest(operator="op\x00x"),
            "operator",
        ),
        ("rbac", "CreateRole", rbac_pb2.CreateRoleRequest(name="r" * 2000), "name"),
        ("rbac", "CreateRole", rbac_pb2.CreateRoleRequest(name="r\x00"), "name"),
        (
            "fleet",
            "SetAutonomy",
            fleet_pb2.SetAutonomyRequest(enabled=False, reason="why\u202e"),
            "reason",
        ),
    ],
)
def test_nul_or_overlong_fields_are_invalid_argument_naming_the_field(
    running_fleet: Fleet, service: str, method: str, request_: object, field: str
) -> None:
    """Defect: answered UNAVAILABLE "audit log cannot record it", which edgectl took for an
    unreachable hub (exit 3)."""
    stubs = {"fleet": fleet_pb2_grpc.FleetStub, "rbac": rbac_pb2_grpc.RbacStub}
    with operator_channel(running_fleet) as channel:
        stub = stubs[service](channel)
        code, details = code_and_details(getattr(stub, method), request_)
    assert code is grpc.StatusCode.INVALID_ARGUMENT, details
    assert f"field {field}" in details


def test_edgectl_reports_an_overlong_name_as_bad_usage(running_fleet: Fleet) -> None:
    result = running_fleet.edgectl("node", "show", "n" * 3000)
    assert result.code == 2, result.stderr
    assert "node_id" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_out_of_range_numbers_are_invalid_argument(node_fleet: Fleet) -> None:
    """Defect: Audit.Prune with older_than_s >= ~9e15 and JournalLocal.Read with
    from_index >= 2^63 answered INTERNAL (OverflowError)."""
    fleet = node_fleet
    with operator_channel(fleet) as channel:
        stub = audit_pb2_grpc.AuditStub(channel)
        for age in (9e15, 1e300, float("inf"), float("nan")):
            code, details = code_and_details(
                stub.Prune, audit_pb2.AuditPruneRequest(older_than_s=age, reason="fuzz")
            )
            assert code is grpc.StatusCode.INVALID_ARGUMENT, (age, details)
    with grpc.insecure_channel(f"unix:{fleet.socket('node-a')}") as channel:
        journal = replication_pb2_grpc.JournalLocalStub(channel)
        for index in (2**63, 2**64 - 1):
            code, details = code_and_details(
                journal.Read, replication_pb2.ReadRequest(from_index=index)
            )
            assert code is grpc.StatusCode.INVALID_ARGUMENT, (index, details)
            assert "from_index" in details
    assert "Traceback" not in fleet.hub.output()
    assert "Traceback" not in fleet.agents["node-a"].output()


def test_undecodable_requests_get_invalid_argument_and_a_rate_limited_log_line(
    node_fleet: Fleet,
) -> None:
    """Defect: UNKNOWN "Unexpected DecodeError" and a full traceback per request, also from
    callers without a certificate (500 requests -> 363 KiB of log)."""
    fleet = node_fleet
    garbage = b"\xff\xff\xff\xff\xff"
    before = len(fleet.hub.output())
    with anonymous_channel(fleet) as channel:
        call = channel.unary_unary("/autonomyops.edge.v1.Fleet/FleetStatus")
        codes = {code_and_details(call, garbage)[0] for _ in range(300)}
    with grpc.insecure_channel(f"unix:{fleet.socket('node-a')}") as channel:
        call = channel.unary_unary("/autonomyops.edge.v1.AgentLocal/RequestPermit")
        codes |= {code_and_details(call, garbage)[0] for _ in range(100)}
    assert codes == {grpc.StatusCode.INVALID_ARGUMENT}
    hub_log = fleet.hub.output()[before:]
    assert "Traceback" not in hub_log
    assert hub_log.count("refused /autonomyops.edge.v1.Fleet/FleetStatus") <= 2, hub_log
    agent_log = fleet.agents["node-a"].output()
    assert "Traceback" not in agent_log
    assert agent_log.count("refused /autonomyops.edge.v1.AgentLocal/RequestPermit") <= 2


def test_anonymous_calls_cannot_fill_the_audit_log(fleet: Fleet) -> None:
    """Defect: 19,009 calls without a certificate in 10 s wrote 19,013 audit events. Also
    join tokens with a made-up id on each call: the id is in the refusal's text, and must
    not open a window of its own."""
    fleet.start_hub("[audit]\nunauthenticated_interval_s = 1.0\n")
    fleet.bootstrap_operator()
    genuine = tokens.parse_token(fleet.token("node-z"))
    started = time.monotonic()
    with anonymous_channel(fleet) as channel:
        status = fleet_pb2_grpc.FleetStub(channel).FleetStatus
        enroll = channel.unary_unary("/autonomyops.edge.v1.Link/Enroll")
        for _ in range(400):
            assert code_and_details(status, fleet_pb2.FleetStatusRequest())[0] is (
                grpc.StatusCode.UNAUTHENTICATED
            )
        for i in range(200):
            made_up = replace(genuine, token_id=f"t{i:05d}").encode()
            request = link_pb2.EnrollRequest(token=made_up).SerializeToString()
            assert code_and_details(enroll, request)[0] is grpc.StatusCode.PERMISSION_DENIED
    windows = math.ceil(time.monotonic() - started) + 1  # intervals of 1 s they spanned

    def counted(events: list[dict], action: str) -> int:
        total = 0
        for e in events:
            if e["action"] == action:
                more = re.match(r"(\d+) more denials", e["detail"] or "")
                total += int(more.group(1)) if more else 1
        return total

    def anonymous() -> list[dict]:
        return [
            e
            for e in audit_events(fleet, "--outcome", "denied")
            if e["target"] == "source:127.0.0.1"
        ]

    # Counts are recorded once their interval has ended: nothing is lost.
    events = wait_until(
        "every denial counted",
        lambda: (
            (found := anonymous())
            and counted(found, "FleetStatus") == 400
            and counted(found, "enroll") == 200
            and found
        ),
        30,
    )
    for action in ("FleetStatus", "enroll"):
        mine = [e for e in events if e["action"] == action]
        assert len(mine) <= 2 * windows, json.dumps(mine, indent=1)


def test_authenticated_denials_keep_one_event_each(running_fleet: Fleet) -> None:
    fleet = running_fleet
    viewer = fleet.login_operator("viewer-1", "viewer")
    before = len(audit_events(fleet, "--outcome", "denied", "--operator", "viewer-1"))
    for _ in range(3):
        result = fleet.edgectl(
            "--context", str(viewer), "estop", "engage", "--scope", "fleet", "--reason", "no"
        )
        assert result.code == 4, result.stderr
    after = audit_events(fleet, "--outcome", "denied", "--operator", "viewer-1")
    assert len(after) - before == 3


def _http(fleet: Fleet, path: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://{fleet.http}{path}")
    request.add_header("Authorization", "Bearer test-token-0123456789abcdef")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize("query", ["?node=NODE-1", "?node=", "?node=a%00b", "?node=" + "n" * 300])
def test_http_status_refuses_an_invalid_or_empty_node_with_400(
    node_fleet: Fleet, query: str
) -> None:
    """Defect: ?node=NODE-1 answered 503 and ?node= answered 200 with node-a's data."""
    fleet = node_fleet
    code, body = _http(fleet, "/v1/autonomy/status" + query)
    assert code == 400, body
    assert "node" in body["error"]
    assert "node_id" not in body


def test_the_agent_reconnects_at_once_after_re_enrolling(running_fleet: Fleet) -> None:
    """Defect: after re-enrolling with a new join token an agent kept its grown backoff and
    reconnected many seconds later."""
    fleet = running_fleet
    config = fleet.write_agent_config("node-a", fleet.token("node-a"))
    text = config.read_text().replace("reconnect_initial_s = 0.2", "reconnect_initial_s = 5.0")
    config.write_text(text.replace("reconnect_max_s = 1.0", "reconnect_max_s = 30.0"))
    agent = fleet.start_agent("node-a", config=config)
    fleet.wait_connected("node-a")
    revoked = fleet.edgectl("cert", "revoke", "--node", "node-a", "--reason", "test", "--force")
    assert revoked.code == 0, revoked.stderr
    wait_until("refused", lambda: "refuses this node's certificate" in agent.output())
    (fleet.agent_dir("node-a") / "token").write_text(fleet.token("node-a"))
    wait_until("re-enrolled", lambda: "re-enrolled as" in agent.output(), 60)
    wait_until("reconnected", lambda: agent.output().count("connected to hub") >= 2, 60)
    after = agent.output().split("re-enrolled as", 1)[1]
    before_connect = after.split("connected to hub", 1)[0]
    assert "reconnecting in" not in before_connect, before_connect


def test_local_caller_name_fields_are_bounded(node_fleet: Fleet) -> None:
    """Defect: 900 KB holder strings were held in memory per permit."""
    fleet = node_fleet
    with grpc.insecure_channel(f"unix:{fleet.socket('node-a')}") as channel:
        stub = agent_pb2_grpc.AgentLocalStub(channel)
        code, details = code_and_details(
            stub.RequestPermit, agent_pb2.PermitRequest(action="move_arm", holder="h" * 900_000)
        )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "holder" in details


def test_a_refused_message_in_an_append_stream_lets_the_appends_before_it_finish(
    node_fleet: Fleet,
) -> None:
    """Each append taken before the bad message is answered; then the stream ends with
    INVALID_ARGUMENT naming the field."""
    fleet = node_fleet
    good = [replication_pb2.AppendRequest(key=f"k{i}", value=b"v", request_id=i) for i in (1, 2, 3)]
    bad = replication_pb2.AppendRequest(key="bad\x00key", value=b"v", request_id=2**64 - 1)
    with grpc.insecure_channel(f"unix:{fleet.socket('node-a')}") as channel:
        call = replication_pb2_grpc.JournalLocalStub(channel).AppendStream(
            iter([*good, bad]), timeout=20
        )
        answered = []
        with pytest.raises(grpc.RpcError) as err:
            answered.extend(result.request_id for result in call)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "field key" in err.value.details()
    assert sorted(answered) == [1, 2, 3]
