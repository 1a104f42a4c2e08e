"""INV-BOOT-01: after a start, an agent grants no permit until it has heard the hub's current
stops and switch, or until its startup sync timeout has passed with the hub unreachable and
`on_hub_loss` allows acting on local state alone.

The agent reaches the hub through a proxy that delays every byte, so the window between
"local API up" and "hub heard" is wide enough to poll many times; before INV-BOOT-01 was
kept, permits were granted in that window.
"""

import time

import grpc

from edgecommon.pb import agent_pb2, agent_pb2_grpc
from tests.procs import Fleet, wait_until
from tests.tcpproxy import TcpProxy

POLL_S = 0.005


def _decisions_from_start(fleet: Fleet, node: str, until: str, bound_s: float = 30.0) -> list[str]:
    """Reasons the agent gives, polled every 5 ms from the moment its socket answers until it
    answers `until` (bounded)."""
    seen: list[str] = []
    deadline = time.monotonic() + bound_s
    wait_until("agent socket", lambda: fleet.socket(node).exists())
    with grpc.insecure_channel(f"unix:{fleet.socket(node)}") as channel:
        stub = agent_pb2_grpc.AgentLocalStub(channel)
        while time.monotonic() < deadline:
            try:
                answer = stub.RequestPermit(
                    agent_pb2.PermitRequest(action="move_arm", dry_run=True, holder="poll"),
                    timeout=2,
                )
            except grpc.RpcError:
                time.sleep(POLL_S)
                continue
            seen.append("granted" if answer.granted else answer.reason)
            if seen[-1] == until:
                return seen
            time.sleep(POLL_S)
    raise AssertionError(f"never answered {until!r} within {bound_s}s; answers: {set(seen)}")


def _decisions_for(fleet: Fleet, node: str, seconds: float) -> list[str]:
    """Reasons the agent gives, polled every 5 ms for `seconds`."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    with grpc.insecure_channel(f"unix:{fleet.socket(node)}") as channel:
        stub = agent_pb2_grpc.AgentLocalStub(channel)
        while time.monotonic() < deadline:
            answer = stub.RequestPermit(
                agent_pb2.PermitRequest(action="move_arm", dry_run=True, holder="poll"), timeout=5
            )
            seen.append("granted" if answer.granted else answer.reason)
            time.sleep(POLL_S)
    return seen


def _enrolled_behind_proxy(fleet: Fleet, node: str, safety: str = "", link: str = "") -> TcpProxy:
    host, _, port = fleet.listen.rpartition(":")
    proxy = TcpProxy(host, int(port)).start()
    fleet.start_agent(node, fleet.token(node), safety=safety)
    fleet.wait_connected(node)
    fleet.agents[node].stop()
    config = fleet.agent_dir(node) / "agent.toml"
    text = config.read_text().replace(f'hub = "{fleet.listen}"', f'hub = "{proxy.address}"')
    config.write_text(text.replace("[link]\n", "[link]\n" + link))
    return proxy


def test_inv_boot_01_no_grant_before_the_hub_stop_is_heard(running_fleet: Fleet) -> None:
    fleet = running_fleet
    proxy = _enrolled_behind_proxy(fleet, "node-a")
    try:
        engaged = fleet.edgectl("estop", "engage", "--scope", "fleet", "--reason", "boot test")
        assert engaged.code == 0, engaged.stderr
        proxy.delay_s = 0.1
        fleet.start_agent("node-a", config=fleet.agent_dir("node-a") / "agent.toml")
        seen = _decisions_from_start(fleet, "node-a", until="estop")
    finally:
        proxy.stop()
    assert "granted" not in seen, seen
    assert "syncing" in seen, seen


def test_inv_boot_01_no_grant_before_the_hub_switch_is_heard(running_fleet: Fleet) -> None:
    fleet = running_fleet
    proxy = _enrolled_behind_proxy(fleet, "node-a")
    try:
        disabled = fleet.edgectl("autonomy", "disable", "--reason", "boot test")
        assert disabled.code == 0, disabled.stderr
        proxy.delay_s = 0.1
        fleet.start_agent("node-a", config=fleet.agent_dir("node-a") / "agent.toml")
        seen = _decisions_from_start(fleet, "node-a", until="autonomy_disabled")
    finally:
        proxy.stop()
    assert "granted" not in seen, seen
    assert seen[0] == "syncing", seen


def test_inv_boot_01_acts_on_local_state_after_the_startup_timeout_when_allowed(
    running_fleet: Fleet,
) -> None:
    fleet = running_fleet
    proxy = _enrolled_behind_proxy(fleet, "node-a", link="startup_sync_timeout_s = 3.0\n")
    try:
        proxy.cut()
        fleet.start_agent("node-a", config=fleet.agent_dir("node-a") / "agent.toml")
        seen = _decisions_from_start(fleet, "node-a", until="granted")
        assert seen[0] == "syncing", seen
        wait_until(
            "log says so", lambda: "acting on local state" in fleet.agents["node-a"].output()
        )
    finally:
        proxy.stop()


def test_inv_boot_01_on_hub_loss_stop_never_acts_on_local_state_alone(
    running_fleet: Fleet,
) -> None:
    fleet = running_fleet
    proxy = _enrolled_behind_proxy(
        fleet,
        "node-a",
        safety='on_hub_loss = "stop"\nhub_loss_timeout_s = 60.0\n',
        link="startup_sync_timeout_s = 0.5\n",
    )
    try:
        proxy.cut()
        fleet.start_agent("node-a", config=fleet.agent_dir("node-a") / "agent.toml")
        wait_until("agent socket", lambda: fleet.socket("node-a").exists())
        seen = _decisions_for(fleet, "node-a", 2.5)  # five times the startup sync timeout
        assert set(seen) == {"syncing"}, set(seen)
        proxy.heal()
        fleet.wait_connected("node-a")
        assert _decisions_from_start(fleet, "node-a", until="granted")[-1] == "granted"
    finally:
        proxy.stop()
