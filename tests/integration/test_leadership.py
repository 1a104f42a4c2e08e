"""Leader leases with real processes: election, switchover, failover, cuts, pause."""

import asyncio
import itertools
import random
import re
import time

import grpc
import pytest

from agent.permit_client import PermitClient, PermitDenied, PermitRevoked
from edgecommon.pb import agent_pb2, agent_pb2_grpc
from tests.procs import Fleet, wait_until
from tests.tcpproxy import TcpProxy

FAST_LEASE = (
    "[lease]\nttl_s = 2.0\nrenew_interval_s = 0.5\nrenew_deadline_s = 0.5\nmargin_s = 0.3\n"
)
NODES = ("node-a", "node-b", "node-c")


def leader_report(fleet: Fleet, group: str = "site-a") -> dict:
    result = fleet.edgectl("--output", "json", "leader", "status", "--group", group)
    assert result.code == 0, result.stderr
    return result.json["groups"][0]


def local_view(fleet: Fleet, node: str) -> dict | None:
    result = fleet.edgectl(
        "--output", "json", "leader", "status", "--local", "--socket", str(fleet.socket(node))
    )
    return result.json if result.code == 0 else None


def current_leader(fleet: Fleet) -> str | None:
    return leader_report(fleet)["leader"]


@pytest.fixture
def group(fleet: Fleet) -> Fleet:
    fleet.start_hub(FAST_LEASE)
    fleet.bootstrap_operator()
    for node in NODES:
        fleet.start_agent(node, fleet.token(node))
    for node in NODES:
        fleet.wait_connected(node)
    wait_until("a leader", lambda: current_leader(fleet))
    return fleet


def test_the_best_candidate_leads_and_replicas_answer_not_leader(group: Fleet) -> None:
    fleet = group
    report = leader_report(fleet)
    assert report["leader"] == "node-a"
    assert report["epoch"] >= 1
    assert all(c["eligible"] for c in report["candidates"])
    view = wait_until(
        "node-a believes", lambda: (v := local_view(fleet, "node-a")) and v["is_leader"] and v
    )
    assert view["epoch"] == report["epoch"]
    denied = fleet.edgectl(
        "--output",
        "json",
        "permit",
        "check",
        "actuate",
        "--leader-only",
        "--socket",
        str(fleet.socket("node-b")),
    )
    assert denied.code == 4
    assert denied.json["reason"] == "not_leader"


def test_graceful_resign_moves_leadership_and_reports_the_window(group: Fleet) -> None:
    fleet = group
    before = leader_report(fleet)
    dry = fleet.edgectl(
        "--output", "json", "leader", "resign", "--group", "site-a", "--to", "node-c", "--dry-run"
    )
    assert dry.code == 0, dry.stderr
    assert dry.json["to"] == "node-c"
    assert current_leader(fleet) == before["leader"]
    done = fleet.edgectl(
        "--output", "json", "leader", "resign", "--group", "site-a", "--to", "node-c"
    )
    assert done.code == 0, done.stderr
    assert done.json["done"]
    assert done.json["new_epoch"] == before["epoch"] + 1
    assert done.json["leaderless_ms"] >= 0
    assert current_leader(fleet) == "node-c"
    assert not local_view(fleet, before["leader"])["is_leader"]


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--group", "nowhere"], 1, "no enrolled nodes"),
        (["--group", "site-a", "--to", "ghost"], 2, "not a member"),
        (["--group", "site-a", "--to", "node-a"], 2, "already leads"),
    ],
)
def test_bad_resign_requests_change_nothing(group: Fleet, args, code, words) -> None:
    fleet = group
    before = leader_report(fleet)
    result = fleet.edgectl("leader", "resign", *args)
    assert result.code == code, result.stderr
    assert words in result.stderr
    after = leader_report(fleet)
    assert (after["leader"], after["epoch"]) == (before["leader"], before["epoch"])


def test_resign_to_an_offline_or_stopped_node_is_refused(group: Fleet) -> None:
    fleet = group
    fleet.agents["node-c"].stop()
    wait_until(
        "node-c gone",
        lambda: (
            not next(c for c in leader_report(fleet)["candidates"] if c["node_id"] == "node-c")[
                "eligible"
            ]
        ),
    )
    result = fleet.edgectl("leader", "resign", "--group", "site-a", "--to", "node-c")
    assert result.code == 1
    assert "cannot take over" in result.stderr
    assert (
        fleet.edgectl("estop", "engage", "--scope", "node:node-b", "--reason", "x", "--wait").code
        == 0
    )
    result = fleet.edgectl("leader", "resign", "--group", "site-a", "--to", "node-b")
    assert result.code == 1
    assert "emergency stop" in result.stderr


def test_paused_group_refuses_resign_and_does_not_fail_over(group: Fleet) -> None:
    fleet = group
    assert fleet.edgectl("leader", "pause", "--group", "site-a").code == 0
    assert leader_report(fleet)["paused"]
    result = fleet.edgectl("leader", "resign", "--group", "site-a")
    assert result.code == 1
    assert "paused" in result.stderr
    leader = current_leader(fleet)
    fleet.agents[leader].kill()
    wait_until("lease expires", lambda: current_leader(fleet) is None)
    assert leader_report(fleet)["leader"] is None
    assert fleet.edgectl("leader", "resume", "--group", "site-a").code == 0
    wait_until("failover after resume", lambda old=leader: current_leader(fleet) not in (None, old))


def test_sigkill_of_the_leader_fails_over_with_the_next_epoch(group: Fleet) -> None:
    fleet = group
    before = leader_report(fleet)
    fleet.agents[before["leader"]].kill()
    new = wait_until(
        "new leader",
        lambda: (r := leader_report(fleet))["leader"] not in (None, before["leader"]) and r,
    )
    assert new["epoch"] == before["epoch"] + 1


def test_cut_leader_steps_down_before_another_leads(fleet: Fleet) -> None:
    """INV-LEASE-01: the cut-off leader stops believing before anyone else is granted."""
    fleet.start_hub(FAST_LEASE)
    fleet.bootstrap_operator()
    host, _, port = fleet.listen.rpartition(":")
    proxy = TcpProxy(host, int(port)).start()
    try:
        config = fleet.write_agent_config("node-a", fleet.token("node-a"))
        config.write_text(
            config.read_text().replace(f'hub = "{fleet.listen}"', f'hub = "{proxy.address}"')
        )
        fleet.start_agent("node-a", config=config)
        fleet.start_agent("node-b", fleet.token("node-b"))
        fleet.wait_connected("node-a")
        fleet.wait_connected("node-b")
        wait_until("node-a leads", lambda: current_leader(fleet) == "node-a")
        proxy.cut()
        wait_until("node-b leads", lambda: current_leader(fleet) == "node-b")
        proxy.heal()
        fleet.wait_connected("node-a")
        intervals = leadership_intervals(fleet, ("node-a", "node-b"))
        assert_no_overlap(intervals)
    finally:
        proxy.stop()


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log_stamp() -> str:
    """Now, in the agents' log timestamp format (UTC here, like their logs)."""
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"


def leadership_intervals(
    fleet: Fleet, nodes, deaths: dict[str, list[str]] | None = None
) -> list[tuple[str, int, str, str]]:
    """(node, epoch, from, to) of believed leadership, read from the agents' own logs; a
    SIGKILLed leader's belief ends when the test killed it (`deaths`)."""
    out = []
    for node in nodes:
        start: tuple[str, int] | None = None
        kills = sorted((deaths or {}).get(node, []))
        for line in (fleet.agent_dir(node) / "agent.log").read_text().splitlines():
            stamp = LOG_TIME.match(line)
            if not stamp:
                continue
            if start is not None and kills and kills[0] <= stamp.group(1):
                out.append((node, start[1], start[0], kills[0]))
                start = None
            kills = [k for k in kills if k > stamp.group(1)]
            if m := re.search(r"leading group \S+ at epoch (\d+)", line):
                start = (stamp.group(1), int(m.group(1)))
            elif "no longer leading" in line and start is not None:
                out.append((node, start[1], start[0], stamp.group(1)))
                start = None
        if start is not None:
            out.append((node, start[1], start[0], "9999"))
    return out


def assert_no_overlap(intervals) -> None:
    ordered = sorted(intervals, key=lambda i: i[2])
    for earlier, later in itertools.pairwise(ordered):
        assert earlier[3] <= later[2], f"{earlier} overlaps {later}"
        assert later[1] > earlier[1], f"epochs must grow: {earlier} then {later}"


def test_inv_lease_01_randomized_kills_and_cuts(fleet: Fleet) -> None:
    """Bounded random trial: kills, restarts, link cuts, slow links (answers past the
    renewal deadline) and resignations; believed leadership never overlaps and epochs only
    grow."""
    rng = random.Random(20261123)
    fleet.start_hub(FAST_LEASE)
    fleet.bootstrap_operator()
    host, _, port = fleet.listen.rpartition(":")
    proxies = {}
    try:
        for node in NODES:
            proxies[node] = TcpProxy(host, int(port)).start()
            config = fleet.write_agent_config(node, fleet.token(node))
            config.write_text(
                config.read_text().replace(
                    f'hub = "{fleet.listen}"', f'hub = "{proxies[node].address}"'
                )
            )
            fleet.start_agent(node, config=config)
        for node in NODES:
            fleet.wait_connected(node)
        deaths: dict[str, list[str]] = {}
        actions = ["kill", "cut", "slow", "resign"] * 2  # each one twice, in random order
        rng.shuffle(actions)
        for action in actions:
            wait_until("some leader", lambda: current_leader(fleet), timeout_s=30)
            leader = current_leader(fleet)
            if action == "kill":
                deaths.setdefault(leader, []).append(log_stamp())
                fleet.agents[leader].kill()
                wait_until(
                    "failover",
                    lambda old=leader: current_leader(fleet) not in (None, old),
                    timeout_s=30,
                )
                fleet.start_agent(leader, config=fleet.agent_dir(leader) / "agent.toml")
                fleet.wait_connected(leader)
            elif action == "cut":
                proxies[leader].cut()
                wait_until(
                    "failover",
                    lambda old=leader: current_leader(fleet) not in (None, old),
                    timeout_s=30,
                )
                proxies[leader].heal()
                fleet.wait_connected(leader)
            elif action == "slow":
                proxies[leader].delay_s = 0.6  # a round trip well past renew_deadline_s
                wait_until(
                    "failover",
                    lambda old=leader: current_leader(fleet) not in (None, old),
                    timeout_s=30,
                )
                proxies[leader].delay_s = 0.0
                fleet.wait_connected(leader)
            else:
                fleet.edgectl("leader", "resign", "--group", "site-a")
        intervals = leadership_intervals(fleet, NODES, deaths)
        assert len(intervals) >= 8
        assert_no_overlap(intervals)
    finally:
        for proxy in proxies.values():
            proxy.stop()


def test_hub_restart_keeps_the_lease_and_its_epoch(group: Fleet) -> None:
    """Expiry and epoch are persisted: a restarted hub neither hands the lease to another
    node nor starts epochs over."""
    fleet = group
    before = leader_report(fleet)
    fleet.hub.stop()
    fleet.start_hub()
    after = wait_until("leader known again", lambda: (r := leader_report(fleet))["leader"] and r)
    assert after["epoch"] >= before["epoch"]
    if after["epoch"] == before["epoch"]:
        # The stored lease survived the restart: nobody else can hold its epoch.
        assert after["leader"] == before["leader"]
    # Otherwise the lease ran out while the hub was down and was granted again, with a
    # new epoch (possibly to the same node).


async def test_workloads_watch_leadership_and_lose_leader_permits_on_switchover(
    group: Fleet,
) -> None:
    fleet = group
    leader = await asyncio.to_thread(current_leader, fleet)
    client = PermitClient(fleet.socket(leader))
    views = []
    holding = asyncio.Event()

    async def watch() -> None:
        async with grpc.aio.insecure_channel(f"unix:{fleet.socket(leader)}") as channel:
            stream = agent_pb2_grpc.AgentLocalStub(channel).WatchLeader(
                agent_pb2.LeaderStatusRequest(), timeout=60
            )
            async for view in stream:
                views.append(view)
                if not view.is_leader:
                    return

    async def leader_work() -> None:
        async with client.permit("actuate", leader_only=True) as held:
            assert held.epoch >= 1
            holding.set()
            await asyncio.sleep(60)

    watcher = asyncio.create_task(watch())
    work = asyncio.create_task(leader_work())
    await asyncio.wait_for(holding.wait(), 20)
    done = await asyncio.to_thread(fleet.edgectl, "leader", "resign", "--group", "site-a")
    assert done.code == 0, done.stderr
    with pytest.raises(PermitRevoked) as revoked:
        await asyncio.wait_for(work, 20)
    assert revoked.value.reason == "not_leader"
    await asyncio.wait_for(watcher, 20)
    assert views[0].is_leader
    assert not views[-1].is_leader
    with pytest.raises(PermitDenied, match="not_leader"):
        async with client.permit("actuate", leader_only=True):
            pass


# A renewal interval long enough to tell "granted at once" from "granted at the next
# renewal", and a deadline a 600 ms each-way link cannot meet.
SLOW_LINK_LEASE = (
    "[lease]\nttl_s = 4.0\nrenew_interval_s = 1.0\nrenew_deadline_s = 1.0\nmargin_s = 0.3\n"
)
SLOW_LINK_TTL_S, SLOW_LINK_INTERVAL_S = 4.0, 1.0


def start_group_with_proxied(fleet: Fleet, proxied: str, lease: str) -> TcpProxy:
    """node-a, node-b, node-c in site-a; `proxied` reaches the hub through a TcpProxy."""
    fleet.start_hub(lease)
    fleet.bootstrap_operator()
    host, _, port = fleet.listen.rpartition(":")
    proxy = TcpProxy(host, int(port)).start()
    for node in NODES:
        if node == proxied:
            config = fleet.write_agent_config(node, fleet.token(node))
            config.write_text(
                config.read_text().replace(f'hub = "{fleet.listen}"', f'hub = "{proxy.address}"')
            )
            fleet.start_agent(node, config=config)
        else:
            fleet.start_agent(node, fleet.token(node))
    for node in NODES:
        fleet.wait_connected(node)
    return proxy


def parse_stamp(stamp: str) -> float:
    day, _, millis = stamp.partition(",")
    return time.mktime(time.strptime(day, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000


def longest_leaderless_s(intervals, start: str, end: str) -> float:
    """The longest stretch of [start, end] in which no agent believed it led."""
    begin, finish = parse_stamp(start), parse_stamp(end)
    covered = sorted(
        (max(parse_stamp(f), begin), min(parse_stamp(t) if t != "9999" else finish, finish))
        for _, _, f, t in intervals
    )
    longest, reached = 0.0, begin
    for since, until in covered:
        if until <= since:
            continue
        longest = max(longest, since - reached)
        reached = max(reached, until)
    return max(longest, finish - reached)


def test_slow_leader_link_never_leaves_the_group_without_an_acting_leader(fleet: Fleet) -> None:
    """600 ms each way on the leader's link: its renewals miss their 1 s deadline but reach
    the hub. A renewal the leader gave up on must not keep the lease at the hub: the group
    is never without an acting leader for longer than ttl + one renewal interval, the hub
    names the node that acts, and the slow member is shown as unable to lead."""
    proxy = start_group_with_proxied(fleet, "node-a", SLOW_LINK_LEASE)
    try:
        wait_until("node-a leads", lambda: current_leader(fleet) == "node-a")
        wait_until("node-a believes", lambda: (v := local_view(fleet, "node-a")) and v["is_leader"])
        start = log_stamp()
        proxy.delay_s = 0.6
        time.sleep(4 * SLOW_LINK_TTL_S)
        end = log_stamp()
        report = leader_report(fleet)
        acting = report["leader"]
        assert acting is not None, report
        view = local_view(fleet, acting)
        assert view is not None
        assert view["is_leader"], f"the hub names {acting} at epoch {report['epoch']}: {view}"
        assert view["epoch"] == report["epoch"]
        slow = next(c for c in report["candidates"] if c["node_id"] == "node-a")
        assert acting != "node-a", report
        assert not slow["eligible"]
        assert "deadline" in slow["why_not"], slow
        intervals = leadership_intervals(fleet, NODES)
        assert_no_overlap(intervals)
        gap = longest_leaderless_s(intervals, start, end)
        assert gap <= SLOW_LINK_TTL_S + SLOW_LINK_INTERVAL_S, f"leaderless for {gap:.1f}s"
    finally:
        proxy.stop()


def test_switchover_right_after_the_targets_link_was_cut_and_healed_is_immediate(
    fleet: Fleet,
) -> None:
    """The target is granted as soon as the old leader confirms its step-down, even when
    its own link to the hub was cut and healed a moment before (its renewal channel must not
    sit out a reconnect backoff while the hub waits for it)."""
    proxy = start_group_with_proxied(fleet, "node-a", SLOW_LINK_LEASE)
    try:
        wait_until("node-a leads", lambda: current_leader(fleet) == "node-a")
        windows = []
        for _ in range(3):
            proxy.cut()
            wait_until("failover", lambda: current_leader(fleet) not in (None, "node-a"))
            time.sleep(2 * SLOW_LINK_INTERVAL_S)
            proxy.heal()
            fleet.wait_connected("node-a")
            done = fleet.edgectl(
                "--output", "json", "leader", "resign", "--group", "site-a", "--to", "node-a"
            )
            assert done.code == 0, done.stderr
            assert done.json["done"], done.json
            windows.append(done.json["leaderless_ms"])
        # Expected: a few ms. One renewal interval (1000 ms) means the grant waited for the
        # target's next regular renewal.
        assert max(windows) < SLOW_LINK_INTERVAL_S * 1000 / 2, windows
    finally:
        proxy.stop()
