"""The agent's configuration (agent.toml), typed and validated before anything starts."""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgecommon.boundary import text_problem
from edgecommon.config import at_least, host_port, one_of, positive, setting


def _optional_host_port(value: str) -> str | None:
    return None if not value else host_port(value)


_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")


def _labels(value: dict[str, str]) -> str | None:
    bad_keys = [k for k in value if not _LABEL_KEY.fullmatch(k)]
    if bad_keys:
        return f"label keys of 1-63 letters, digits and ._/- (not {', '.join(map(repr, bad_keys))})"
    bad = [k for k, v in value.items() if len(v) > 256 or text_problem(v)]
    if bad:
        return f"label values of one line, at most 256 characters (see {', '.join(bad)})"
    return None


# A group is named as in /etc/group, or given as a numeric gid (for groups without a name).
_GROUP_RE = re.compile(r"^(\d{1,10}|[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?)$")
# The agent binds private sockets beside its public one (see agent/local/relay.py): their
# paths, the public path plus this many characters, must fit in a sockaddr_un (107 bytes).
PRIVATE_PATH_EXTRA = 21
MAX_SOCKET_PATH = 107 - PRIVATE_PATH_EXTRA


def _groups(value: list[str]) -> str | None:
    bad = [g for g in value if not _GROUP_RE.fullmatch(g)]
    return f"group names or numeric gids (e.g. edge-operators or 990); not {bad}" if bad else None


def _between(low: int, high: int) -> Callable[[int], str | None]:
    return lambda v: None if low <= v <= high else f"a number in [{low}, {high}]"


@dataclass(frozen=True)
class AgentSection:
    state_dir: Path = setting(
        Path("/var/lib/edge-agent"), "Directory for the node's key, certificates and state."
    )
    hub: str = setting("127.0.0.1:7443", "The hub's mutual-TLS address.", host_port)
    enroll_address: str = setting(
        "",
        "The hub's enrollment (TLS) address; empty means the hub's host with port 7444.",
        _optional_host_port,
    )
    join_token: str = setting(
        "", "Join token for first enrollment (prefer join_token_file).", env=True
    )
    join_token_file: str = setting("", "File holding the join token for first enrollment.")
    socket: Path = setting(
        Path("/run/edge-agent/agent.sock"), "Unix socket of the local API (edgectl, workloads)."
    )
    socket_mode: int = setting(
        0o660, "Permissions of the local API socket (432 is 0o660: owner and group).", at_least(0)
    )
    labels: dict[str, str] = setting({}, "Labels reported to the hub (e.g. site, rack).", _labels)
    log_level: str = setting(
        "info", "debug, info, warning or error.", one_of("debug", "info", "warning", "error")
    )


@dataclass(frozen=True)
class LinkSection:
    heartbeat_interval_s: float = setting(
        1.0, "Heartbeat period until the hub names its own on registration.", positive
    )
    reconnect_initial_s: float = setting(0.5, "First reconnect backoff ceiling.", positive)
    reconnect_max_s: float = setting(30.0, "Cap on the reconnect backoff ceiling.", positive)
    connect_timeout_s: float = setting(
        10.0, "Deadline for opening the stream and registering.", positive
    )
    rpc_timeout_s: float = setting(10.0, "Deadline for unary calls to the hub.", positive)
    stream_max_age_s: float = setting(
        7200.0, "Deadline of one Connect stream; the agent then reconnects.", positive
    )
    startup_sync_timeout_s: float = setting(
        20.0,
        "After a start, permits are denied (reason 'syncing') until the hub's current stops and "
        "switch are applied; if the hub stays unreachable this long, [safety].on_hub_loss = "
        "continue lets the agent act on its stored state, stop never does.",
        positive,
    )
    stream_refresh_s: float = setting(
        3000.0,
        "Move the hub stream to a fresh connection this often, without a drop (keep it below "
        "the hub's [certs].max_connection_age_s, which closes older connections).",
        positive,
    )


@dataclass(frozen=True)
class SafetySection:
    node_switch_file: Path = setting(
        Path("/etc/autonomyops/autonomy.yaml"),
        "This node's autonomy switch (YAML, autonomy_enabled: true|false); effective = fleet AND "
        "node.",
    )
    switch_default: bool = setting(
        True,
        "Node switch value when its file does not exist (source 'default (config not mounted)').",
    )
    tick_s: float = setting(
        1.0,
        "How often the node switch is re-read and hub loss checked (at most 1 s).",
        lambda v: None if 0 < v <= 1.0 else "a number in (0, 1]",
    )
    on_hub_loss: str = setting(
        "continue",
        "continue, or stop: latch a local stop when cut off from the hub too long.",
        one_of("continue", "stop"),
    )
    hub_loss_timeout_s: float = setting(
        300.0, "How long without the hub before on_hub_loss = stop latches a stop.", positive
    )


@dataclass(frozen=True)
class RenewalSection:
    availability_target_h: float = setting(
        24.0,
        "How long this node must survive without the hub. Renewal starts at a jittered 60-75 % "
        "of the certificate's lifetime, never later than this long before expiry.",
        positive,
    )
    retry_initial_s: float = setting(10.0, "First retry delay after a failed renewal.", positive)
    retry_max_s: float = setting(600.0, "Cap on the renewal retry delay.", positive)
    trust_check_interval_s: float = setting(
        300.0, "How often the hub's trust bundle is fetched (to learn of a CA rollover).", positive
    )
    rollover_spread_s: float = setting(
        60.0,
        "After a CA rollover, renew onto the new CA within this (jittered) window.",
        at_least(0),
    )
    handover_timeout_s: float = setting(
        10.0, "Deadline for moving the hub stream onto a renewed certificate.", positive
    )


@dataclass(frozen=True)
class ReplicationSection:
    listen: str = setting(
        "127.0.0.1:0",
        "Address of this node's Peer service (replicas pull the journal here, mutual TLS); "
        "port 0 picks a free port. Use a routable address and a fixed port between machines.",
        host_port,
    )
    advertise_address: str = setting(
        "",
        "Address other nodes use to reach the Peer service; empty means the bound address.",
        _optional_host_port,
    )
    max_payload_bytes: int = setting(
        65536,
        "Largest journal entry value accepted.",
        lambda v: None if 1 <= v <= 524288 else "a number in [1, 524288]",
    )
    pull_max_entries: int = setting(
        5000, "Most entries a replica asks for in one pull (flow control).", at_least(1)
    )
    pull_max_bytes: int = setting(
        2 * 1024 * 1024,
        "Most bytes a replica asks for in one pull (flow control).",
        lambda v: None if 65536 <= v <= 3 * 1024 * 1024 else "a number in [65536, 3145728]",
    )
    pull_wait_s: float = setting(
        1.0, "How long a pull waits at the leader for new entries (long poll).", positive
    )
    commit_timeout_s: float = setting(
        5.0,
        "How long an append waits for the sync replicas; then it is answered as not committed.",
        positive,
    )
    replica_timeout_s: float = setting(
        3.0,
        "A replica not heard from (no pull) for this long is lost; strict mode then refuses "
        "appends.",
        positive,
    )
    auto_rewind: bool = setting(
        False,
        "Rewind automatically when this node finds its journal diverged from the leader's "
        "(the divergent suffix is still saved to the forensics directory).",
    )
    forensics_dir: str = setting(
        "", "Where divergent suffixes are saved; empty means <state_dir>/forensics."
    )


@dataclass(frozen=True)
class LocalSection:
    """Who may do what on the local socket (agent/local/auth.py). Root and the agent's own
    user are always node operators; everyone else needs a group below."""

    operator_groups: list[str] = setting(
        ["edge-operators"],
        "Groups whose members are node operators on the local socket: local e-stop engage and "
        "release, certificate rotation, journal recovery, any permit. Members also need the "
        "socket's group to connect.",
        _groups,
    )
    workload_groups: list[str] = setting(
        ["edge-workloads"],
        "Groups whose members are workloads: ask for, watch and release their own permits, "
        "read status. The default is also the socket directory's group (systemd/tmpfiles.d).",
        _groups,
    )
    journal_append_groups: list[str] = setting(
        [],
        "Groups whose members may read and append to the replicated journal besides node "
        "operators. Empty: only node operators.",
        _groups,
    )
    max_permits_per_caller: int = setting(
        64, "Most permits one local user (uid) may hold at once.", _between(1, 100_000)
    )
    max_permits_total: int = setting(
        1024, "Most permits the agent holds at once, for all callers.", _between(1, 1_000_000)
    )
    max_connections_per_caller: int = setting(
        32,
        "Most open connections to the local socket per user; node operators are not "
        "counted, so a busy workload cannot lock edgectl out.",
        _between(1, 10_000),
    )


@dataclass(frozen=True)
class AgentConfig:
    agent: AgentSection = field(default_factory=AgentSection)
    link: LinkSection = field(default_factory=LinkSection)
    safety: SafetySection = field(default_factory=SafetySection)
    renewal: RenewalSection = field(default_factory=RenewalSection)
    replication: ReplicationSection = field(default_factory=ReplicationSection)
    local: LocalSection = field(default_factory=LocalSection)

    def problems(self) -> list[str]:
        found = []
        if self.link.reconnect_initial_s > self.link.reconnect_max_s:
            found.append("[link].reconnect_initial_s must not exceed [link].reconnect_max_s")
        if self.link.stream_refresh_s >= self.link.stream_max_age_s:
            found.append("[link].stream_refresh_s must be below [link].stream_max_age_s")
        if self.renewal.retry_initial_s > self.renewal.retry_max_s:
            found.append("[renewal].retry_initial_s must not exceed [renewal].retry_max_s")
        if len(str(self.agent.socket)) > MAX_SOCKET_PATH:
            found.append(
                f"[agent].socket path is too long: at most {MAX_SOCKET_PATH} characters (the "
                f"agent binds private sockets beside it), got {self.agent.socket}"
            )
        if self.local.max_permits_per_caller > self.local.max_permits_total:
            found.append("[local].max_permits_per_caller must not exceed [local].max_permits_total")
        return found

    @property
    def enroll_target(self) -> str:
        if self.agent.enroll_address:
            return self.agent.enroll_address
        host, _, _ = self.agent.hub.rpartition(":")
        return f"{host}:7444"
