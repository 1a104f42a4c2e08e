"""Shutdown is bounded and ordered on every path: on SIGTERM every daemon exits 0 within
its bound, whatever it was doing.

The races that `edgectl dev down` hit now and then (all processes get SIGTERM at once)
are made to happen every time by freezing a process (SIGSTOP) while the other side
moves, then sending SIGTERM and thawing it: the signal and the network event it races
with are then handled in the same few turns of the event loop.

* an agent whose hub stream ends as it is told to stop (the hub went first): it used
  to log "SIGTERM received" and reconnect until SIGKILL;
* a hub whose agents disconnect as it is told to stop (they stopped first): it used to
  stay up, serving, until SIGKILL;
* an agent stopped in each phase of its link: enrolling, handshaking with a hub that does
  not answer, backing off, renewing its certificate.

A clean stop means exit code 0, no "did not finish" line (the bounded-shutdown backstop
in edgecommon/daemon.py exits 1 and names what still ran) and no traceback.
"""

import signal
import subprocess
import sys
import time

import pytest

from agent.main import SHUTDOWN_BOUND_S as AGENT_BOUND_S
from hub.server import SHUTDOWN_BOUND_S as HUB_BOUND_S
from tests.procs import Fleet, Proc, clean_env, wait_until

NODES = ("node-1", "node-2", "node-3")
CYCLES = 3
# Process teardown after the daemon's own bound (interpreter exit, on a loaded machine).
EXIT_MARGIN_S = 3.0


def stopped_cleanly(proc: Proc, bound_s: float, what: str) -> None:
    assert proc.popen is not None
    try:
        code = proc.popen.wait(bound_s + EXIT_MARGIN_S)
    except subprocess.TimeoutExpired:
        output = proc.output()
        proc.kill()
        pytest.fail(
            f"{proc.name} ({what}) still ran {bound_s + EXIT_MARGIN_S}s after SIGTERM:\n"
            f"{output[-3000:]}"
        )
    output = proc.output()
    assert "did not finish" not in output, f"{proc.name} ({what}):\n{output[-3000:]}"
    assert "Traceback" not in output, f"{proc.name} ({what}):\n{output[-3000:]}"
    assert code == 0, f"{proc.name} ({what}) exited {code}:\n{output[-3000:]}"


def start_all(fleet: Fleet, first: bool) -> None:
    if fleet.hub is None or not fleet.hub.running():
        fleet.start_hub()
    if first:
        fleet.bootstrap_operator()
    for node in NODES:
        if node not in fleet.agents or not fleet.agents[node].running():
            token = fleet.token(node) if first else None
            config = None if first else fleet.agent_dir(node) / "agent.toml"
            fleet.start_agent(node, token, config=config)
    for node in NODES:
        fleet.wait_connected(node)


def test_agents_stop_on_sigterm_that_arrives_as_the_hub_ends_their_streams(
    fleet: Fleet,
) -> None:
    start_all(fleet, first=True)
    for cycle in range(CYCLES):
        agents = list(fleet.agents.values())
        for proc in agents:
            proc.signal(signal.SIGSTOP)
        # The streams end under the frozen agents (a killed hub ends them at once; a
        # stopping hub's ending takes its grace with frozen peers, see the last test).
        assert fleet.hub is not None
        fleet.hub.kill()
        for proc in agents:
            proc.signal(signal.SIGTERM)
            proc.signal(signal.SIGCONT)
        for proc in agents:
            stopped_cleanly(proc, AGENT_BOUND_S, f"cycle {cycle}, stream ended as it stopped")
        start_all(fleet, first=False)


def test_the_hub_stops_on_sigterm_that_arrives_as_its_agents_disconnect(fleet: Fleet) -> None:
    start_all(fleet, first=True)
    for cycle in range(CYCLES):
        hub = fleet.hub
        assert hub is not None
        hub.signal(signal.SIGSTOP)
        for proc in fleet.agents.values():
            proc.signal(signal.SIGTERM)
        for proc in fleet.agents.values():
            stopped_cleanly(proc, AGENT_BOUND_S, f"cycle {cycle}, hub frozen")
        hub.signal(signal.SIGTERM)
        hub.signal(signal.SIGCONT)
        stopped_cleanly(hub, HUB_BOUND_S, f"cycle {cycle}, agents gone as it stopped")
        start_all(fleet, first=False)


def renewal_state(fleet: Fleet, node: str) -> str:
    shown = fleet.edgectl("-o", "json", "cert", "inspect", "--socket", str(fleet.socket(node)))
    return str(shown.json["renewal"]["state"]) if shown.code == 0 else ""


def agent_state(fleet: Fleet, node: str) -> str:
    status = fleet.agent_status(node)
    return str(status["hub"]["state"]) if status else ""


def test_an_agent_stops_on_sigterm_in_every_phase_of_its_link(fleet: Fleet) -> None:
    fleet.start_hub()
    fleet.bootstrap_operator()
    token = fleet.token("node-1")
    hub = fleet.hub
    assert hub is not None

    # Enrolling, with a hub that accepts the connection and never answers.
    hub.signal(signal.SIGSTOP)
    agent = fleet.start_agent("node-1", token)
    wait_until("node-1 enrolling", lambda: agent_state(fleet, "node-1") == "enrolling")
    time.sleep(0.5)  # the Enroll call is in flight
    agent.signal(signal.SIGTERM)
    stopped_cleanly(agent, AGENT_BOUND_S, "enrollment in flight")
    hub.signal(signal.SIGCONT)

    # Enrolled and connected; then the hub freezes with a renewal in flight.
    agent = fleet.start_agent("node-1", token)
    fleet.wait_connected("node-1")
    hub.signal(signal.SIGSTOP)
    rotate = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgectl.main",
            "cert",
            "rotate",
            "--socket",
            str(fleet.socket("node-1")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env(),
    )
    try:
        wait_until(
            "the renewal in flight",
            lambda: renewal_state(fleet, "node-1") == "renewing",
            timeout_s=15,
        )
        agent.signal(signal.SIGTERM)
        stopped_cleanly(agent, AGENT_BOUND_S, "renewal in flight, hub frozen")
    finally:
        rotate.kill()
        rotate.wait(10)

    # Handshaking with the frozen hub (the TCP connection is accepted, TLS never answers).
    agent = fleet.start_agent("node-1", config=fleet.agent_dir("node-1") / "agent.toml")
    wait_until("node-1 connecting", lambda: agent_state(fleet, "node-1") == "connecting")
    time.sleep(0.5)
    agent.signal(signal.SIGTERM)
    stopped_cleanly(agent, AGENT_BOUND_S, "handshake in flight")

    # Backing off, the hub gone.
    hub.signal(signal.SIGCONT)
    hub.signal(signal.SIGTERM)
    stopped_cleanly(hub, HUB_BOUND_S, "after being frozen")
    agent = fleet.start_agent("node-1", config=fleet.agent_dir("node-1") / "agent.toml")
    wait_until("node-1 backing off", lambda: agent_state(fleet, "node-1") == "backoff")
    agent.signal(signal.SIGTERM)
    stopped_cleanly(agent, AGENT_BOUND_S, "reconnect backoff")


def test_a_hub_with_connected_agents_stops_within_its_bound(fleet: Fleet) -> None:
    fleet.start_hub()
    fleet.bootstrap_operator()
    for node in NODES[:2]:
        fleet.start_agent(node, fleet.token(node))
    for node in NODES[:2]:
        fleet.wait_connected(node)
    hub = fleet.hub
    assert hub is not None
    started = time.monotonic()
    hub.signal(signal.SIGTERM)
    stopped_cleanly(hub, HUB_BOUND_S, "agents connected and reconnecting")
    # The agents' streams were ended by the hub, not left to time out.
    assert time.monotonic() - started < HUB_BOUND_S
    for node in NODES[:2]:
        wait_until(f"{node} notices", lambda n=node: agent_state(fleet, n) != "connected")
