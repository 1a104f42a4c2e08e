"""edgectl dev up|down: a hub and agents on loopback, enrolled over real mTLS.

The hub and the agents are their own entry points, started as processes; so is the dev
operator's credential (`edge-hub bootstrap-operator`, which signs with the dev hub's CA).
"""

import argparse
import asyncio
import secrets
import shutil
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgecommon import pki
from edgecommon.cli import exitcodes
from edgecommon.cli.context_dir import Context
from edgecommon.cli.output import Column
from edgecommon.errors import EdgeError, InvalidArgument
from edgecommon.identity import name_problem
from edgecommon.pb import agent_pb2, agent_pb2_grpc, fleet_pb2
from edgectl import devfleet, hubcmd
from edgectl.app import App
from edgectl.clients import fleet
from edgectl.context import DEV_DIR_NAME

READY_TIMEOUT_S = 30.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dev", help="a local dev fleet (hub + agents on loopback)")
    dsub = p.add_subparsers(dest="dev_command", required=True, metavar="COMMAND")
    up = dsub.add_parser("up", help="start (or restart) the dev fleet under ./.edge-dev")
    up.add_argument("--nodes", type=int, default=3, help="number of agents (default 3)")
    up.add_argument("--group", default="dev", help="their group (default dev)")
    up.set_defaults(func=dev_up)
    down = dsub.add_parser("down", help="stop every process of the dev fleet")
    down.add_argument("--purge", action="store_true", help="also delete ./.edge-dev")
    down.set_defaults(func=dev_down)


def _dev_dir(app: App) -> Path:
    return app.cwd / DEV_DIR_NAME


def _hub_toml(directory: Path) -> str:
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(devfleet.free_port())
    listen, enroll, http = sorted(ports)
    hub_dir = directory / "hub"
    token_file = hub_dir / "http-token"
    pki.atomic_write(token_file, (secrets.token_urlsafe(24) + "\n").encode(), 0o600)
    switch = hub_dir / "autonomy.yaml"
    if not switch.exists():
        switch.write_text(
            "# Fleet autonomy switch of the dev fleet: the single source of truth.\n"
            "autonomy_enabled: true\n"
        )
    return (
        "# dev fleet hub, written by 'edgectl dev up'\n[hub]\n"
        f'state_dir = "{hub_dir / "state"}"\n'
        f'listen = "127.0.0.1:{listen}"\nenroll_listen = "127.0.0.1:{enroll}"\n'
        f'[autonomy]\nfile = "{switch}"\n'
        f'[http]\nlisten = "127.0.0.1:{http}"\ntoken_file = "{token_file}"\n'
    )


def _agent_toml(node_dir: Path, hub: devfleet.DevHub, node: str) -> str:
    return (
        f"# dev fleet agent {node}, written by 'edgectl dev up'\n[agent]\n"
        f'state_dir = "{node_dir / "state"}"\n'
        f'hub = "{hub.listen}"\nenroll_address = "{hub.enroll_listen}"\n'
        f'join_token_file = "{node_dir / "join-token"}"\n'
        f'socket = "{node_dir / "agent.sock"}"\n'
        f'labels = {{ dev = "true", node = "{node}" }}\n'
        f'[safety]\nnode_switch_file = "{node_dir / "autonomy.yaml"}"\n'
    )


async def _wait_hub_ready(hub: devfleet.DevHub, started: devfleet.Managed) -> None:
    ca = hub.ca_cert
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not devfleet.alive(started):
            raise EdgeError(f"edge-hub exited; its log says:\n{devfleet.log_tail(started.log)}")
        if ca.exists():
            creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
            async with grpc.aio.secure_channel(hub.enroll_listen, creds) as channel:
                try:
                    answer = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1.0
                    )
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
        await asyncio.sleep(0.1)
    raise EdgeError(f"edge-hub did not become ready in {READY_TIMEOUT_S:g}s; see {started.log}")


async def _agent_state(socket: Path) -> agent_pb2.AgentStatus | None:
    if not socket.exists():
        return None
    async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
        try:
            return await agent_pb2_grpc.AgentLocalStub(channel).Status(
                agent_pb2.StatusRequest(), timeout=1.0
            )
        except grpc.aio.AioRpcError:
            return None


async def _wait_agents(agents: dict[str, Path], started: list[devfleet.Managed]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = dict(agents)
    while pending and time.monotonic() < deadline:
        for node, socket in list(pending.items()):
            state = await _agent_state(socket)
            if state is not None and state.hub_state == "connected":
                del pending[node]
        for p in started:
            if p.name in pending and not devfleet.alive(p):
                raise EdgeError(f"agent {p.name} exited; its log says:\n{devfleet.log_tail(p.log)}")
        await asyncio.sleep(0.1)
    if pending:
        raise EdgeError(
            f"agents {', '.join(sorted(pending))} did not connect in "
            f"{READY_TIMEOUT_S:g}s; see their agent.log under {DEV_DIR_NAME}/"
        )


async def _bootstrap_operator(app: App, hub: devfleet.DevHub, directory: Path) -> None:
    """The dev operator's credential, from the dev hub's CA, written as the dev context."""
    words = ["bootstrap-operator", f"--config={hub.file}", "--name=dev-admin", f"--dir={directory}"]
    done = await hubcmd.captured(words, app.environ, app.cwd)
    if done.code != 0:
        raise EdgeError(f"edge-hub bootstrap-operator failed: {done.stderr.strip()}")


async def dev_up(app: App) -> int:
    args = app.args
    for what, value in (("group", args.group),):
        if problem := name_problem(what, value):
            raise InvalidArgument(problem)
    if not 1 <= args.nodes <= 50:
        raise InvalidArgument("--nodes must be between 1 and 50")
    directory = _dev_dir(app)
    table = devfleet.ProcessTable(directory)
    running = [p for p in table.load() if devfleet.alive(p)]
    if running:
        app.out.note(
            f"dev fleet already running ({len(running)} processes); 'edgectl dev down' stops it"
        )
        return await _summary(app, directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    hub_file = directory / "hub" / "hub.toml"
    if not hub_file.exists():
        hub_file.parent.mkdir(parents=True, exist_ok=True)
        hub_file.write_text(_hub_toml(directory))
    hub = devfleet.DevHub.read(hub_file)
    for address in (hub.listen, hub.enroll_listen):
        if not devfleet.port_free(int(address.rpartition(":")[2])):
            raise EdgeError(
                f"port {address} of the dev hub is taken; free it or run "
                "'edgectl dev down --purge' to start over on new ports"
            )
    started: list[devfleet.Managed] = []
    hub_proc = devfleet.start(
        "hub",
        [*devfleet.python_module("hub.main"), "--config", str(hub_file)],
        directory / "hub" / "hub.log",
        directory,
    )
    started.append(hub_proc)
    table.save(started)
    await _wait_hub_ready(hub, hub_proc)

    if not Context.load(directory).key_path.exists():
        await _bootstrap_operator(app, hub, directory)
    context = Context.load(directory)
    nodes = [f"node-{i}" for i in range(1, args.nodes + 1)]
    agents = {node: directory / node / "agent.sock" for node in nodes}
    context.agents = {node: str(path) for node, path in agents.items()}
    context.hub = hub.listen
    context.save()
    async with fleet(context, hub.listen, app.timeout_s) as (stub, call):
        for node in nodes:
            node_dir = directory / node
            node_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not (node_dir / "state" / "pki" / "node.crt").exists():
                answer = await call(
                    stub.CreateJoinToken,
                    fleet_pb2.CreateJoinTokenRequest(node_id=node, group=args.group, ttl_s=600),
                )
                token_file = node_dir / "join-token"
                token_file.write_text(answer.token + "\n")
                token_file.chmod(0o600)
            (node_dir / "agent.toml").write_text(_agent_toml(node_dir, hub, node))
            started.append(
                devfleet.start(
                    node,
                    [
                        *devfleet.python_module("agent.main"),
                        "--config",
                        str(node_dir / "agent.toml"),
                    ],
                    node_dir / "agent.log",
                    directory,
                )
            )
            table.save(started)
    await _wait_agents(agents, started)
    return await _summary(app, directory)


async def _summary(app: App, directory: Path) -> int:
    context = Context.load(directory)
    processes = devfleet.ProcessTable(directory).load()
    hub_file = directory / "hub" / "hub.toml"
    hub_http = devfleet.DevHub.read(hub_file).http_listen if hub_file.exists() else ""
    rows = [
        {
            "name": p.name,
            "pid": p.pid,
            "log": str(Path(p.log).relative_to(app.cwd))
            if Path(p.log).is_relative_to(app.cwd)
            else p.log,
            "state": "running" if devfleet.alive(p) else "stopped",
        }
        for p in processes
    ]
    data = {
        "hub": context.hub,
        "operator": context.operator,
        "context": str(directory),
        "processes": rows,
        "agents": context.agents,
    }
    app.out.table(
        data,
        rows,
        [
            Column("PROCESS", "name"),
            Column("PID", "pid"),
            Column("STATE", "state"),
            Column("LOG", "log"),
        ],
    )
    if app.out.fmt != "json":
        first = sorted(context.agents)[0] if context.agents else "node-1"
        app.out.note(
            f"\ndev fleet up: hub {context.hub}, operator {context.operator}, context "
            f"{directory}\nTry next:\n"
            "  edgectl fleet status\n"
            f"  edgectl node show {first}\n"
            f"  edgectl status --node {first}\n"
            "  edgectl estop engage --scope fleet --reason 'drill' --wait\n"
            "  edgectl autonomy status\n"
            f'  curl -H "Authorization: Bearer $(cat {directory}/hub/http-token)" '
            f"http://{hub_http}/v1/autonomy/status\n"
            "  edgectl dev down"
        )
    return exitcodes.OK


async def dev_down(app: App) -> int:
    directory = _dev_dir(app)
    table = devfleet.ProcessTable(directory)
    processes = table.load()
    was_running = [p.name for p in processes if devfleet.alive(p)]
    killed = await asyncio.to_thread(devfleet.stop_all, processes)
    table.clear()
    if app.args.purge and directory.exists():
        shutil.rmtree(directory)
    data = {"stopped": was_running, "killed": killed, "purged": bool(app.args.purge)}
    message = f"stopped {', '.join(was_running)}" if was_running else "no dev fleet running"
    if killed:
        message += f" ({', '.join(killed)} did not stop in time and were killed)"
    app.out.text(data, message + (f"; removed {directory}" if app.args.purge else ""))
    return exitcodes.OK
