"""The fleet link end to end: real hub and agent processes, real mTLS on loopback, edgectl."""

import signal
import stat

from agent.link.status import AGENT_SECTIONS
from hub.assemble import HUB_SECTIONS
from tests.keycheck import secret_needles
from tests.procs import Fleet, wait_until


def test_agents_enroll_connect_and_show_in_fleet_status(running_fleet: Fleet) -> None:
    fleet = running_fleet
    for node in ("node-a", "node-b"):
        fleet.start_agent(node, fleet.token(node))
    status = fleet.wait_connected("node-a")
    assert status["node_id"] == "node-a"
    assert status["group"] == "site-a"
    assert status["certificate"]["expires_in_s"] > 71 * 3600
    fleet.wait_connected("node-b")

    def both_reporting() -> dict | None:
        nodes = {n["node_id"]: n for n in fleet.fleet_status()["nodes"]}
        ok = len(nodes) == 2 and all(
            n["state"] == "online" and n["metrics"] for n in nodes.values()
        )
        return nodes if ok else None

    nodes = wait_until("heartbeats with metrics", both_reporting)
    node_a = nodes["node-a"]
    assert node_a["group"] == "site-a"
    assert node_a["agent_version"]
    assert node_a["labels"] == {"rack": "r1"}
    assert node_a["cert_serial"] == status["certificate"]["serial"]
    assert 0 <= node_a["metrics"]["cpu_percent"] <= 100
    assert node_a["metrics"]["rss_bytes"] > 0

    shown = fleet.node("node-b")
    assert shown["state"] == "online"
    assert shown["group"] == "site-a"

    # Both statuses carry their daemon's statistics, every section, read from the components.
    agent = fleet.wait_connected("node-a")["statistics"]
    assert sorted(agent) == sorted(AGENT_SECTIONS)
    assert agent["link"]["state"] == "connected"
    assert agent["link"]["connects"] >= 1
    assert agent["safety"]["hub_heard"] is True
    assert agent["safety"]["stops"] == {"hub": 0, "local": 0, "hub_loss": 0}
    assert agent["leadership"]["group"] == "site-a"
    assert agent["replication"]["role"] in ("leader", "replica", "idle")
    assert agent["local_gate"]["allowed"] >= 1
    assert agent["local_relay"]["accepted"] >= 1
    hub = fleet.fleet_status()["statistics"]
    assert sorted(hub) == sorted(HUB_SECTIONS)
    assert (hub["registry"]["nodes"], hub["registry"]["online"]) == (2, 2)
    assert hub["registry"]["heartbeats"] >= 2
    assert hub["gate"]["allowed"] >= 1
    assert hub["leases"]["renewals"] >= 1
    by_group = fleet.edgectl("-o", "json", "fleet", "status", "--group", "site-a").json
    assert by_group["statistics"] is None
    table = fleet.edgectl("status", "--socket", str(fleet.socket("node-a"))).stdout
    assert "Statistics:" in table
    assert "  link:" in table
    assert "state connected" in table
    table = fleet.edgectl("fleet", "status").stdout
    assert "Hub statistics" in table
    assert "registry:" in table


def test_restarted_agent_keeps_its_identity_and_does_not_re_enroll(running_fleet: Fleet) -> None:
    fleet = running_fleet
    fleet.start_agent("node-a", fleet.token("node-a"))
    before = fleet.wait_connected("node-a")
    assert fleet.agents["node-a"].stop() == 0
    (fleet.agent_dir("node-a") / "token").unlink()  # the token is spent; a restart needs none
    fleet.start_agent("node-a", token=None)
    after = fleet.wait_connected("node-a")
    assert after["certificate"]["serial"] == before["certificate"]["serial"]
    assert after["pid"] != before["pid"]
    assert "enrolled as" not in fleet.agents["node-a"].output()


def test_hub_marks_a_silent_node_offline_and_back_online(running_fleet: Fleet) -> None:
    fleet = running_fleet
    fleet.hub.stop()
    fleet.start_hub("[link]\noffline_after_s = 3.0\n")
    agent = fleet.start_agent("node-a", fleet.token("node-a"))
    fleet.wait_connected("node-a")
    agent.signal(signal.SIGSTOP)
    try:
        offline = wait_until(
            "node-a offline", lambda: (n := fleet.node("node-a"))["state"] == "offline" and n
        )
        assert "no heartbeat" in offline["state_reason"]
    finally:
        agent.signal(signal.SIGCONT)
    try:
        wait_until("node-a back online", lambda: fleet.node("node-a")["state"] == "online")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\nhub log:\n{fleet.hub.output()[-3000:]}\nagent log:\n{agent.output()[-3000:]}"
        ) from None


def test_agents_reconnect_after_a_hub_restart(running_fleet: Fleet) -> None:
    fleet = running_fleet
    fleet.start_agent("node-a", fleet.token("node-a"))
    fleet.wait_connected("node-a")
    fleet.hub.stop()
    wait_until("agent notices", lambda: fleet.agent_status("node-a")["hub"]["state"] != "connected")
    status = fleet.agent_status("node-a")
    assert status["hub"]["last_error"]
    fleet.start_hub()
    link = fleet.wait_connected("node-a")["statistics"]["link"]
    assert link["disconnects"] >= 1
    assert link["connects"] >= 2
    wait_until("registry online again", lambda: fleet.node("node-a")["state"] == "online")


def test_stopped_agent_is_offline_with_reason(running_fleet: Fleet) -> None:
    fleet = running_fleet
    fleet.start_agent("node-a", fleet.token("node-a"))
    fleet.wait_connected("node-a")
    fleet.agents["node-a"].stop()
    node = wait_until("offline", lambda: (n := fleet.node("node-a"))["state"] == "offline" and n)
    assert node["state_reason"]
    assert node["metrics"] is None


def test_inv_pki_01_key_files_are_private_and_never_printed(running_fleet: Fleet) -> None:
    """INV-PKI-01: keys are 0600 where they were generated and appear in no log or output."""
    fleet = running_fleet
    fleet.start_agent("node-a", fleet.token("node-a"))
    fleet.wait_connected("node-a")
    keys = [
        fleet.hub_state / "pki" / "ca.key",
        fleet.hub_state / "pki" / "hub.key",
        fleet.agent_dir("node-a") / "state" / "pki" / "node.key",
        fleet.context / "operator.key",
    ]
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    outputs = [
        fleet.hub.output(),
        fleet.agents["node-a"].output(),
        fleet.edgectl("--output", "json", "status", "--socket", str(fleet.socket("node-a"))).stdout,
        fleet.edgectl("--output", "json", "node", "show", "node-a").stdout,
        fleet.edgectl("--output", "json", "fleet", "status").stdout,
    ]
    needles = [n for k in keys for n in secret_needles(k)]
    for text in outputs:
        assert "PRIVATE KEY" not in text
        for needle in needles:
            assert needle not in text


def test_health_service_reports_serving_on_both_ports(running_fleet: Fleet) -> None:
    import asyncio

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    ca = (running_fleet.hub_state / "pki" / "ca.crt").read_bytes()

    async def check() -> list[int]:
        results = []
        ctx = running_fleet.context
        mtls = grpc.ssl_channel_credentials(
            ca, (ctx / "operator.key").read_bytes(), (ctx / "operator.crt").read_bytes()
        )
        tls = grpc.ssl_channel_credentials(ca)
        for address, creds in ((running_fleet.listen, mtls), (running_fleet.enroll, tls)):
            async with grpc.aio.secure_channel(address, creds) as channel:
                answer = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="autonomyops.edge.v1.Link"), timeout=5
                )
                results.append(answer.status)
        return results

    assert asyncio.run(check()) == [health_pb2.HealthCheckResponse.SERVING] * 2


def test_hub_unreachable_during_enrollment_is_retried_and_reported(fleet: Fleet) -> None:
    fleet.write_hub_config()
    fleet.start_hub()
    fleet.bootstrap_operator()
    token = fleet.token("node-a")
    fleet.hub.stop()
    fleet.start_agent("node-a", token)

    def reported() -> dict | None:
        status = fleet.agent_status("node-a")
        return status if status and "unreachable" in (status["hub"]["last_error"] or "") else None

    status = wait_until("unreachable reported", reported)
    assert status["node_id"] is None
    assert status["hub"]["state"] in ("backoff", "enrolling")
    assert "hub unreachable" in fleet.agents["node-a"].output()
    fleet.start_hub()
    assert fleet.wait_connected("node-a")["node_id"] == "node-a"


def test_overloaded_hub_tells_agents_to_back_off_and_all_get_in(fleet: Fleet) -> None:
    # One registration every 2 s: three agents started together cannot all get in at once,
    # however slowly this machine starts them (tokens first, then the agents).
    fleet.start_hub("[link]\nmax_registrations_per_s = 0.5\nregistration_burst = 1\n")
    fleet.bootstrap_operator()
    nodes = ["node-a", "node-b", "node-c"]
    tokens = {node: fleet.token(node) for node in nodes}
    for node in nodes:
        fleet.start_agent(node, tokens[node])
    for node in nodes:
        fleet.wait_connected(node)
    logs = "".join(fleet.agents[n].output() for n in nodes)
    assert "hub asked to back off" in logs
    assert fleet.fleet_status()["online"] == 3


def test_agent_notices_a_frozen_hub_through_keepalive(running_fleet: Fleet) -> None:
    """A hung hub sends nothing and closes nothing: only keepalive pings can tell."""
    fleet = running_fleet
    fleet.start_agent("node-a", fleet.token("node-a"))
    fleet.wait_connected("node-a")
    fleet.hub.signal(signal.SIGSTOP)
    try:
        status = wait_until(
            "agent notices the frozen hub",
            lambda: (s := fleet.agent_status("node-a")) and s["hub"]["state"] != "connected" and s,
        )
        assert status["hub"]["last_error"]
    finally:
        fleet.hub.signal(signal.SIGCONT)
    fleet.wait_connected("node-a")


def test_local_socket_is_owner_and_group_only(running_fleet: Fleet) -> None:
    fleet = running_fleet
    fleet.start_agent("node-a", fleet.token("node-a"))
    fleet.wait_connected("node-a")
    mode = fleet.socket("node-a").stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660


async def test_reflection_lists_the_services(running_fleet: Fleet) -> None:
    import grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    ca = (running_fleet.hub_state / "pki" / "ca.crt").read_bytes()
    async with grpc.aio.secure_channel(
        running_fleet.enroll, grpc.ssl_channel_credentials(ca)
    ) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(timeout=10)
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        answer = await call.read()
        await call.done_writing()
    names = {s.name for s in answer.list_services_response.service}
    assert {
        "autonomyops.edge.v1.Link",
        "autonomyops.edge.v1.Fleet",
        "grpc.health.v1.Health",
    } <= names
