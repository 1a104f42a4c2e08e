"""Emergency stop, permits and the autonomy switch with real processes."""

import asyncio
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from agent.permit_client import PermitClient, PermitDenied, PermitRevoked
from edgecommon.autonomy_file import write_switch
from tests.procs import Fleet, wait_until


def permit(fleet: Fleet, node: str, action: str = "move_arm") -> tuple[int, dict]:
    result = fleet.edgectl(
        "--output", "json", "permit", "check", action, "--socket", str(fleet.socket(node))
    )
    return result.code, (result.json if result.stdout else {})


def two_nodes(fleet: Fleet) -> Fleet:
    for node in ("node-a", "node-b"):
        fleet.start_agent(node, fleet.token(node))
    for node in ("node-a", "node-b"):
        fleet.wait_connected(node)
    return fleet


@pytest.fixture
def stop_fleet(running_fleet: Fleet) -> Fleet:
    return two_nodes(running_fleet)


def engage(fleet: Fleet, scope: str, *extra: str) -> tuple[int, dict]:
    result = fleet.edgectl(
        "--output", "json", "estop", "engage", "--scope", scope, "--reason", "test stop", *extra
    )
    return result.code, (result.json if result.stdout else {"stderr": result.stderr})


def test_engage_reaches_every_node_and_denies_permits(stop_fleet: Fleet) -> None:
    fleet = stop_fleet
    assert permit(fleet, "node-a")[0] == 0
    code, report = engage(fleet, "fleet", "--wait")
    assert code == 0
    stop = report["stops"][0]
    assert stop["summary"] == {"acknowledged": 2, "pending": 0, "unreachable": 0}
    assert all(n["ack_latency_ms"] >= 0 for n in stop["nodes"])
    for node in ("node-a", "node-b"):
        code, decision = permit(fleet, node)
        assert code == 4
        assert decision["reason"] == "estop"


def test_inv_estop_01_latch_survives_sigkill_and_restart(stop_fleet: Fleet) -> None:
    """INV-ESTOP-01: acknowledged means latched on disk; a killed agent comes back stopped,
    even with the hub gone."""
    fleet = stop_fleet
    assert engage(fleet, "node:node-a", "--wait")[0] == 0
    fleet.agents["node-a"].kill()
    fleet.hub.stop()
    fleet.start_agent("node-a")
    wait_until("agent answers", lambda: fleet.agent_status("node-a"))
    code, decision = permit(fleet, "node-a")
    assert code == 4
    assert decision["reason"] == "estop"
    local = fleet.edgectl(
        "--output", "json", "estop", "status", "--local", "--socket", str(fleet.socket("node-a"))
    ).json
    assert local["stopped"]
    assert local["stops"][0]["scope"] == "node:node-a"


def test_inv_estop_01_offline_agent_is_stopped_first_thing_on_reconnect(stop_fleet: Fleet) -> None:
    """INV-ESTOP-01: a node away during engage applies the stop before it calls itself
    connected, so no permit slips through after reconnecting."""
    fleet = stop_fleet
    fleet.agents["node-b"].stop()
    wait_until("node-b offline", lambda: fleet.node("node-b")["state"] == "offline")
    code, report = engage(fleet, "group:site-a")
    assert code == 0
    states = {n["node_id"]: n["state"] for n in report["stops"][0]["nodes"]}
    assert states["node-b"] == "unreachable"
    agent = fleet.start_agent("node-b")
    fleet.wait_connected("node-b")
    log = agent.output()
    assert log.index("EMERGENCY STOP latched") < log.index("connected to hub")
    assert permit(fleet, "node-b")[1]["reason"] == "estop"
    status = fleet.edgectl("--output", "json", "estop", "status", "--wait").json
    assert status["stops"][0]["summary"]["acknowledged"] == 2


def test_release_grants_again_and_only_for_a_stopped_scope(stop_fleet: Fleet) -> None:
    fleet = stop_fleet
    not_stopped = fleet.edgectl("estop", "release", "--scope", "fleet", "--reason", "x", "--force")
    assert not_stopped.code == 1
    assert "is not stopped" in not_stopped.stderr
    assert engage(fleet, "fleet", "--wait")[0] == 0
    unconfirmed = fleet.edgectl("estop", "release", "--scope", "fleet", "--reason", "done")
    assert unconfirmed.code == 2
    assert "--force" in unconfirmed.stderr
    assert permit(fleet, "node-a")[0] == 4
    released = fleet.edgectl("estop", "release", "--scope", "fleet", "--reason", "done", "--force")
    assert released.code == 0, released.stderr
    wait_until("permits again", lambda: permit(fleet, "node-a")[0] == 0)
    assert fleet.edgectl("--output", "json", "estop", "status").json["stops"] == []


def test_node_release_does_not_lift_a_fleet_stop(stop_fleet: Fleet) -> None:
    fleet = stop_fleet
    assert engage(fleet, "fleet", "--wait")[0] == 0
    assert engage(fleet, "node:node-a", "--wait")[0] == 0
    assert (
        fleet.edgectl("estop", "release", "--scope", "node:node-a", "--reason", "r", "--force").code
        == 0
    )
    assert permit(fleet, "node-a")[1]["reason"] == "estop"


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--scope", "everything", "--reason", "x"], 2, "unknown scope"),
        (["--scope", "fleet", "--reason", " "], 2, "reason is required"),
        (["--scope", "group:nowhere", "--reason", "x"], 1, "no enrolled nodes"),
        (["--scope", "node:ghost", "--reason", "x"], 1, "not enrolled"),
    ],
)
def test_bad_engage_requests_change_nothing(
    running_fleet: Fleet, args: list[str], code: int, words: str
) -> None:
    fleet = running_fleet
    fleet.start_agent("node-a", fleet.token("node-a"))
    fleet.wait_connected("node-a")
    result = fleet.edgectl("estop", "engage", *args)
    assert result.code == code
    assert words in result.stderr
    assert fleet.edgectl("--output", "json", "estop", "status").json["stops"] == []
    assert permit(fleet, "node-a")[0] == 0


def test_local_stop_works_with_the_hub_unreachable(stop_fleet: Fleet) -> None:
    fleet = stop_fleet
    fleet.hub.stop()
    sock = str(fleet.socket("node-a"))
    engaged = fleet.edgectl(
        "estop", "engage", "--local", "--reason", "operator on site", "--socket", sock
    )
    assert engaged.code == 0, engaged.stderr
    assert permit(fleet, "node-a")[1]["reason"] == "estop"
    assert permit(fleet, "node-b")[0] == 0
    released = fleet.edgectl(
        "estop", "release", "--local", "--reason", "clear", "--force", "--socket", sock
    )
    assert released.code == 0, released.stderr
    assert permit(fleet, "node-a")[0] == 0


def test_agent_stops_itself_when_cut_off_too_long(running_fleet: Fleet) -> None:
    fleet = running_fleet
    fleet.start_agent(
        "node-a", fleet.token("node-a"), safety='on_hub_loss = "stop"\nhub_loss_timeout_s = 1.0\n'
    )
    fleet.wait_connected("node-a")
    assert permit(fleet, "node-a")[0] == 0
    fleet.hub.stop()
    # Denied as 'syncing' from the moment the cut-off passes the timeout (INV-BOOT-01), as
    # 'estop' once the hub-loss stop is latched on the next safety tick.
    decision = wait_until(
        "hub-loss stop", lambda: (p := permit(fleet, "node-a"))[1].get("reason") == "estop" and p
    )
    assert decision[1]["reason"] == "estop"
    assert "cut off from the hub" in decision[1]["detail"]


def test_switch_flips_within_a_tick_and_reports_its_source(stop_fleet: Fleet) -> None:
    fleet = stop_fleet
    write_switch(fleet.fleet_switch_file, False, "maintenance", "test", "now")
    _, decision = wait_until(
        "fleet switch off on node-a", lambda: (p := permit(fleet, "node-a"))[0] == 4 and p
    )
    assert decision["reason"] == "autonomy_disabled"
    assert f"configmap:{fleet.fleet_switch_file}" in decision["detail"]
    write_switch(fleet.node_switch_file("node-b"), False, "node maintenance", "test", "now")
    write_switch(fleet.fleet_switch_file, True, "back", "test", "now")
    wait_until("node-a back", lambda: permit(fleet, "node-a")[0] == 0)
    # node-b reads its own switch file on its own tick, which may come after node-a's.
    _, decision = wait_until(
        "node-b off by its own switch",
        lambda: (p := permit(fleet, "node-b"))[0] == 4 and "on this node" in p[1]["detail"] and p,
    )
    assert decision["reason"] == "autonomy_disabled"


def test_invalid_switch_file_fails_closed_with_the_exact_source(running_fleet: Fleet) -> None:
    fleet = running_fleet
    fleet.fleet_switch_file.write_text("autonomy_enabled: perhaps\n")
    status = wait_until(
        "invalid file seen",
        lambda: (
            (s := fleet.edgectl("--output", "json", "autonomy", "status").json)["source"]
            == "default (error reading config)"
            and s
        ),
    )
    assert status["autonomy_enabled"] is False
    assert "perhaps" in status["error"]
    fleet.fleet_switch_file.write_text("- not\n- a mapping\n")
    fleet.fleet_switch_file.unlink()
    wait_until(
        "missing file is the default",
        lambda: (
            fleet.edgectl("--output", "json", "autonomy", "status").json["source"]
            == "default (config not mounted)"
        ),
    )


def test_edgectl_autonomy_disable_reports_when_it_took_effect(stop_fleet: Fleet) -> None:
    fleet = stop_fleet
    fleet.fleet_switch_file.write_text("# fleet switch\nautonomy_enabled: true  # keep me\n")
    result = fleet.edgectl("--output", "json", "autonomy", "disable", "--reason", "storm coming")
    assert result.code == 0, result.stderr
    assert result.json["autonomy_enabled"] is False
    assert result.json["pending"] == []
    assert all(n["applied"] for n in result.json["nodes"])
    assert "fleet-wide" in result.stderr
    text = fleet.fleet_switch_file.read_text()
    assert "# fleet switch" in text
    assert "autonomy_enabled: false  # keep me" in text
    assert "storm coming" in text
    assert permit(fleet, "node-a")[1]["reason"] == "autonomy_disabled"
    empty = fleet.edgectl("autonomy", "enable", "--reason", "")
    assert empty.code == 2


def _http(fleet: Fleet, path: str, token: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://{fleet.http}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_http_status_answers_exactly_the_runbook_shape(stop_fleet: Fleet) -> None:
    fleet = stop_fleet
    token = fleet.http_token_file.read_text().strip()
    code, body = _http(fleet, "/v1/autonomy/status", token)
    assert code == 200
    assert body == {"autonomy_enabled": True, "source": "default (config not mounted)"}
    code, body = _http(fleet, "/v1/autonomy/status?node=node-a", token)
    assert code == 200
    assert body["node"]["node_id"] == "node-a"
    assert body["node"]["autonomy_enabled"] is True
    assert _http(fleet, "/v1/autonomy/status?node=ghost", token)[0] == 404
    assert _http(fleet, "/v1/autonomy/status", None)[0] == 401
    assert _http(fleet, "/v1/autonomy/status", "wrong-token")[0] == 401
    assert _http(fleet, "/v1/autonomy/status", token + "x")[0] == 401
    assert token not in fleet.hub.output()


async def test_inv_estop_01_held_permit_is_revoked_by_an_emergency_stop(stop_fleet: Fleet) -> None:
    fleet = stop_fleet
    client = PermitClient(fleet.socket("node-a"), holder="test-workload")
    started = asyncio.Event()

    async def workload() -> None:
        async with client.permit("move_arm"):
            started.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(workload())
    await asyncio.wait_for(started.wait(), 10)
    code, _ = await asyncio.to_thread(engage, fleet, "node:node-a")
    assert code == 0
    with pytest.raises(PermitRevoked) as revoked:
        await asyncio.wait_for(task, 10)
    assert revoked.value.reason == "estop"
    with pytest.raises(PermitDenied) as denied:
        async with client.permit("move_arm"):
            pass
    assert denied.value.reason == "estop"


async def test_released_permit_is_no_longer_held(stop_fleet: Fleet) -> None:
    fleet = stop_fleet
    client = PermitClient(fleet.socket("node-a"))
    async with client.permit("move_arm") as held:
        status = await asyncio.to_thread(fleet.agent_status, "node-a")
        assert status is not None
        assert held.permit_id
    local = await asyncio.to_thread(
        fleet.edgectl,
        "--output",
        "json",
        "estop",
        "status",
        "--local",
        "--socket",
        str(fleet.socket("node-a")),
    )
    assert local.json["held_permits"] == 0


def test_permit_client_is_importable_from_a_workload(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", "from agent.permit_client import PermitClient; print('ok')"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "ok"


def test_agent_keeps_the_last_fleet_switch_without_the_hub(stop_fleet: Fleet) -> None:
    fleet = stop_fleet
    result = fleet.edgectl("autonomy", "disable", "--reason", "keep me off")
    assert result.code == 0, result.stderr
    fleet.hub.stop()
    fleet.agents["node-a"].stop()
    fleet.start_agent("node-a", link="startup_sync_timeout_s = 1.0\n")
    wait_until("agent answers", lambda: fleet.agent_status("node-a"))
    # INV-BOOT-01: first it waits for the hub, then it acts on what it stored.
    decision = wait_until(
        "stored switch applies",
        lambda: (p := permit(fleet, "node-a"))[1]["reason"] != "syncing" and p,
    )
    assert decision[0] == 4
    assert decision[1]["reason"] == "autonomy_disabled"
    assert "fleet-wide" in decision[1]["detail"]
