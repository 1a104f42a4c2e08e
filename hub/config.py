"""The hub's configuration (hub.toml), typed and validated before anything starts."""

from dataclasses import dataclass, field
from pathlib import Path

from edgecommon.config import at_least, host_port, one_of, positive, setting
from edgecommon.identity import NAME_RE, name_problem


def _trust_domain(value: str) -> str | None:
    return None if NAME_RE.fullmatch(value) else "a trust domain of a-z, 0-9, '.', '_' or '-'"


@dataclass(frozen=True)
class HubSection:
    state_dir: Path = setting(Path("/var/lib/edge-hub"), "Directory for the CA, keys and database.")
    listen: str = setting(
        "127.0.0.1:7443", "Mutual-TLS address for agents and operators.", host_port
    )
    enroll_listen: str = setting(
        "127.0.0.1:7444",
        "TLS address (no client certificate) where agents and operators enroll with a token.",
        host_port,
    )
    server_names: list[str] = setting(
        ["localhost", "127.0.0.1", "::1"],
        "DNS names and IP addresses put in the hub's server certificate.",
    )
    trust_domain: str = setting("edge", "Trust domain in every identity URI.", _trust_domain)
    log_level: str = setting(
        "info", "debug, info, warning or error.", one_of("debug", "info", "warning", "error")
    )


@dataclass(frozen=True)
class LinkSection:
    heartbeat_interval_s: float = setting(1.0, "How often agents send a heartbeat.", positive)
    offline_after_s: float = setting(
        5.0, "A node with no heartbeat for this long is marked offline.", positive
    )
    register_timeout_s: float = setting(
        10.0, "A new stream must register within this time or is closed.", positive
    )
    max_registrations_per_s: float = setting(
        2000.0, "Sustained rate of new agent streams; excess agents are told to back off.", positive
    )
    registration_burst: float = setting(
        2000.0, "Registrations admitted at once before the rate applies.", at_least(1)
    )
    flush_interval_s: float = setting(
        2.0, "How often live node state (last seen, metrics) is written to the store.", positive
    )


@dataclass(frozen=True)
class CertsSection:
    ca_lifetime_days: float = setting(3650.0, "Lifetime of a newly created CA.", positive)
    node_lifetime_h: float = setting(72.0, "Lifetime of node certificates.", positive)
    operator_lifetime_h: float = setting(720.0, "Lifetime of operator certificates.", positive)
    hub_lifetime_days: float = setting(365.0, "Lifetime of the hub's server certificate.", positive)
    token_ttl_default_s: float = setting(
        3600.0, "Join token lifetime when none is given.", positive
    )
    token_ttl_max_s: float = setting(7 * 86400.0, "Longest join token lifetime allowed.", positive)
    max_connection_age_s: float = setting(
        3600.0,
        "Connections are closed (gracefully) after this long, so every client re-handshakes "
        "against the current trust bundle; keep it well below node_lifetime_h.",
        positive,
    )


@dataclass(frozen=True)
class StoreSection:
    backend: str = setting("sqlite", "Hub store backend.", one_of("sqlite"))
    path: str = setting("", "SQLite database file; empty means <state_dir>/hub.db.")


@dataclass(frozen=True)
class AutonomySection:
    file: Path = setting(
        Path("/etc/autonomyops/autonomy.yaml"),
        "The fleet autonomy switch (YAML, autonomy_enabled: true|false), the single source of "
        "truth.",
    )
    default_enabled: bool = setting(
        True, "Value when the file does not exist (source 'default (config not mounted)')."
    )
    check_interval_s: float = setting(
        1.0,
        "How often the file is re-read (at most 1 s).",
        lambda v: None if 0 < v <= 1.0 else "a number in (0, 1]",
    )


@dataclass(frozen=True)
class HttpSection:
    listen: str = setting(
        "127.0.0.1:7480",
        "Address of the HTTP status API (/v1/autonomy/status); empty disables.",
        lambda v: None if not v else host_port(v),
    )
    token_file: str = setting(
        "", "File holding the bearer token for the HTTP API; the API is off while empty."
    )
    token_operator: str = setting(
        "status-api",
        "The operator name the bearer token acts as for RBAC and audit (needs autonomy.read).",
        lambda v: name_problem("operator", v),
    )


@dataclass(frozen=True)
class LeaseSection:
    ttl_s: float = setting(10.0, "Leader lease lifetime; down to 2 s for LAN sites.", at_least(2.0))
    renew_interval_s: float = setting(2.0, "How often the leader renews its lease.", positive)
    renew_deadline_s: float = setting(
        1.0,
        "Deadline of one renewal call: an answer after it does not count, and a member whose "
        "answers come later is neither renewed nor granted.",
        positive,
    )
    margin_s: float = setting(
        0.5,
        "The leader stops believing in its lease this long before it could expire.",
        positive,
    )


def _pg_url(value: str) -> str | None:
    if not value or value.startswith(("postgresql://", "postgres://")):
        return None
    return "a URL like postgresql://user@host:5432/dbname (or empty for the file log only)"


@dataclass(frozen=True)
class RbacSection:
    dir: str = setting(
        "",
        "Directory of YAML files holding roles and assignments (reloaded on change; API edits "
        "are then refused). Empty: RBAC lives in the hub store and is edited with edgectl rbac.",
    )
    enforcement: bool = setting(
        True,
        "Check every operator request against RBAC. false (AUTONOMY_RBAC_ENFORCEMENT=0) is "
        "break-glass: requests are let through, logged loudly and audited as bypassed.",
    )


@dataclass(frozen=True)
class AuditSection:
    dir: str = setting(
        "",
        "Directory of the file audit log (JSON lines, fsynced, rotated by size); empty means "
        "<state_dir>/audit. Always written when PostgreSQL is not set or cannot be reached.",
    )
    pg_url: str = setting(
        "",
        "PostgreSQL URL of the audit_events table; empty: the file log only.",
        _pg_url,
    )
    rotate_mb: float = setting(
        64.0, "Size at which a file log segment is rotated (at least 0.01).", at_least(0.01)
    )
    unauthenticated_interval_s: float = setting(
        60.0,
        "Denials of callers without a valid credential are recorded once per source and reason "
        "per this interval, then as one event with their count (so they cannot fill the log).",
        positive,
    )


def _group_min_sync(value: dict[str, str]) -> str | None:
    bad = [g for g, n in value.items() if not (n.isdigit() and int(n) <= 16)]
    return f"whole numbers 0-16 per group (not {', '.join(bad)})" if bad else None


@dataclass(frozen=True)
class ReplicationSection:
    min_sync_replicas: int = setting(
        -1,
        "Sync replicas that must hold an entry before it is acknowledged as committed; -1 means "
        "1 for groups of two or more nodes and 0 (async) for single nodes.",
        lambda v: None if -1 <= v <= 16 else "a number in [-1, 16]",
    )
    group_min_sync: dict[str, str] = setting(
        {}, 'min_sync_replicas per group, e.g. { site-a = "2" }.', _group_min_sync
    )
    strict: bool = setting(
        True,
        "Strict mode: the leader refuses appends while a sync replica is lost, instead of "
        "continuing without it.",
    )
    replica_timeout_s: float = setting(
        3.0,
        "A replica whose last pull is older than this is lost (as the leader reports).",
        positive,
    )
    restore_max_lag_entries: int = setting(
        1000, "A replica at most this many entries behind counts as caught up.", at_least(0)
    )
    max_async_lag_entries: int = setting(
        1000,
        "Async mode: quorum is reported as not met when the best replica lags more than this "
        "(what a failover could lose).",
        at_least(0),
    )
    plan_interval_s: float = setting(
        0.25, "How often the hub re-evaluates sync sets and sends changed plans.", positive
    )


@dataclass(frozen=True)
class HubConfig:
    hub: HubSection = field(default_factory=HubSection)
    link: LinkSection = field(default_factory=LinkSection)
    certs: CertsSection = field(default_factory=CertsSection)
    store: StoreSection = field(default_factory=StoreSection)
    autonomy: AutonomySection = field(default_factory=AutonomySection)
    http: HttpSection = field(default_factory=HttpSection)
    lease: LeaseSection = field(default_factory=LeaseSection)
    rbac: RbacSection = field(default_factory=RbacSection)
    audit: AuditSection = field(default_factory=AuditSection)
    replication: ReplicationSection = field(default_factory=ReplicationSection)

    def problems(self) -> list[str]:
        found = []
        if self.link.offline_after_s <= self.link.heartbeat_interval_s:
            found.append(
                "[link].offline_after_s must be greater than [link].heartbeat_interval_s "
                f"({self.link.offline_after_s} <= {self.link.heartbeat_interval_s})"
            )
        if self.certs.token_ttl_default_s > self.certs.token_ttl_max_s:
            found.append("[certs].token_ttl_default_s must not exceed [certs].token_ttl_max_s")
        lease = self.lease
        if lease.renew_interval_s + 2 * lease.renew_deadline_s > lease.ttl_s:
            found.append(
                "[lease] timing rule broken: renew_interval_s + 2 x renew_deadline_s must be <= "
                f"ttl_s ({lease.renew_interval_s:g} + 2 x {lease.renew_deadline_s:g} > "
                f"{lease.ttl_s:g})"
            )
        elif lease.ttl_s - lease.renew_interval_s <= self.link.heartbeat_interval_s:
            found.append(
                "[lease].ttl_s - renew_interval_s must exceed [link].heartbeat_interval_s, so a "
                "surviving sync replica reports its journal before a failover can happen"
            )
        if lease.margin_s >= lease.ttl_s - lease.renew_interval_s:
            found.append("[lease].margin_s must be smaller than ttl_s - renew_interval_s")
        if self.certs.max_connection_age_s * 4 > self.certs.node_lifetime_h * 3600:
            found.append(
                "[certs].max_connection_age_s must be at most a quarter of node_lifetime_h "
                "so connections re-handshake long before a certificate expires"
            )
        if self.hub.listen == self.hub.enroll_listen:
            found.append("[hub].listen and [hub].enroll_listen must differ")
        return found

    @property
    def audit_dir(self) -> Path:
        return Path(self.audit.dir) if self.audit.dir else self.hub.state_dir / "audit"

    @property
    def db_path(self) -> Path:
        return Path(self.store.path) if self.store.path else self.hub.state_dir / "hub.db"
