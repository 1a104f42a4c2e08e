"""Link faults between an agent and the hub, through a TCP proxy the test controls."""

from collections.abc import Iterator

import pytest

from tests.procs import Fleet, wait_until
from tests.tcpproxy import TcpProxy


@pytest.fixture
def proxied(running_fleet: Fleet) -> Iterator[tuple[Fleet, TcpProxy]]:
    """node-a reaches the hub only through the proxy; node-b directly."""
    fleet = running_fleet
    host, _, port = fleet.listen.rpartition(":")
    proxy = TcpProxy(host, int(port)).start()
    token = fleet.token("node-a")
    config = fleet.write_agent_config("node-a", token)
    config.write_text(
        config.read_text().replace(f'hub = "{fleet.listen}"', f'hub = "{proxy.address}"')
    )
    fleet.start_agent("node-a", config=config)
    fleet.start_agent("node-b", fleet.token("node-b"))
    fleet.wait_connected("node-a")
    fleet.wait_connected("node-b")
    try:
        yield fleet, proxy
    finally:
        proxy.stop()


def permit_reason(fleet: Fleet, node: str) -> str:
    result = fleet.edgectl(
        "--output", "json", "permit", "check", "move_arm", "--socket", str(fleet.socket(node))
    )
    return result.json["reason"]


def test_cut_link_marks_the_node_offline_and_healing_brings_it_back(proxied) -> None:
    fleet, proxy = proxied
    proxy.cut()
    wait_until("hub sees node-a offline", lambda: fleet.node("node-a")["state"] == "offline")
    assert fleet.agent_status("node-a")["hub"]["state"] != "connected"
    proxy.heal()
    fleet.wait_connected("node-a")
    wait_until("node-a online", lambda: fleet.node("node-a")["state"] == "online")


def test_inv_estop_01_stop_engaged_during_a_cut_reaches_the_node_when_healed(proxied) -> None:
    fleet, proxy = proxied
    proxy.cut()
    wait_until("node-a offline", lambda: fleet.node("node-a")["state"] == "offline")
    engaged = fleet.edgectl(
        "--output",
        "json",
        "estop",
        "engage",
        "--scope",
        "fleet",
        "--reason",
        "cut drill",
        "--wait",
        "--wait-timeout",
        "10s",
    )
    assert engaged.code == 0, engaged.stderr
    states = {n["node_id"]: n["state"] for n in engaged.json["stops"][0]["nodes"]}
    assert states == {"node-a": "unreachable", "node-b": "acknowledged"}
    assert permit_reason(fleet, "node-a") == "granted"  # it cannot know yet
    proxy.heal()
    wait_until("node-a stopped", lambda: permit_reason(fleet, "node-a") == "estop")
    status = fleet.edgectl("--output", "json", "estop", "status", "--wait").json
    assert status["stops"][0]["summary"]["acknowledged"] == 2


def test_release_during_a_cut_reaches_the_node_when_healed(proxied) -> None:
    fleet, proxy = proxied
    assert fleet.edgectl("estop", "engage", "--scope", "fleet", "--reason", "r", "--wait").code == 0
    assert permit_reason(fleet, "node-a") == "estop"
    proxy.cut()
    wait_until("node-a offline", lambda: fleet.node("node-a")["state"] == "offline")
    assert (
        fleet.edgectl("estop", "release", "--scope", "fleet", "--reason", "ok", "--force").code == 0
    )
    wait_until("node-b released", lambda: permit_reason(fleet, "node-b") == "granted")
    assert (
        permit_reason(fleet, "node-a") == "estop"
    )  # still latched: the release has not reached it
    proxy.heal()
    wait_until("node-a released", lambda: permit_reason(fleet, "node-a") == "granted")


def test_slow_link_still_delivers_the_stop(proxied) -> None:
    fleet, proxy = proxied
    proxy.delay_s = 0.2
    engaged = fleet.edgectl(
        "--output",
        "json",
        "estop",
        "engage",
        "--scope",
        "node:node-a",
        "--reason",
        "slow",
        "--wait",
    )
    assert engaged.code == 0, engaged.stderr
    node = engaged.json["stops"][0]["nodes"][0]
    assert node["state"] == "acknowledged"
    assert permit_reason(fleet, "node-a") == "estop"
