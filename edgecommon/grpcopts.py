"""gRPC channel and server options, pinned on purpose on both sides.

Why each one is set is in ../docs/architecture.md ("The link"). In short: keepalive
pings with an explicit ping timeout so a frozen peer is noticed in seconds (grpc's own
timer otherwise waits ~60 s), pings allowed without data so an idle stream stays
watched, a server ping policy at or below the client's keepalive so the hub never
answers pings with GOAWAY, a bounded connection age so certificates are re-checked,
and explicit message size limits.
"""

from dataclasses import dataclass

MAX_LINK_MESSAGE_BYTES = 256 * 1024
MAX_LOCAL_MESSAGE_BYTES = 1024 * 1024
MAX_REPORT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class KeepalivePolicy:
    client_time_ms: int = 2_000
    client_timeout_ms: int = 2_000
    server_time_ms: int = 10_000
    server_timeout_ms: int = 5_000
    max_connection_age_ms: int = 3_600_000
    max_connection_age_grace_ms: int = 60_000


def client_options(
    policy: KeepalivePolicy = KeepalivePolicy(),
    *,
    private_connection: bool = True,
    max_message_bytes: int = MAX_LINK_MESSAGE_BYTES,
) -> list[tuple[str, int | str]]:
    options: list[tuple[str, int | str]] = [
        ("grpc.keepalive_time_ms", policy.client_time_ms),
        ("grpc.keepalive_timeout_ms", policy.client_timeout_ms),
        ("grpc.http2.ping_timeout_ms", policy.client_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # The agent schedules its own reconnects with jitter; grpc's internal
        # reconnect backoff only needs to stay out of the way.
        ("grpc.initial_reconnect_backoff_ms", 1_000),
        ("grpc.min_reconnect_backoff_ms", 1_000),
        ("grpc.max_reconnect_backoff_ms", 5_000),
        ("grpc.enable_retries", 0),
    ]
    if private_connection:
        # Channels with identical options in one process silently share a
        # connection; each link must own its own.
        options.append(("grpc.use_local_subchannel_pool", 1))
    return options


def server_options(
    policy: KeepalivePolicy = KeepalivePolicy(),
    *,
    max_message_bytes: int = MAX_LINK_MESSAGE_BYTES,
) -> list[tuple[str, int | str]]:
    return [
        ("grpc.keepalive_time_ms", policy.server_time_ms),
        ("grpc.keepalive_timeout_ms", policy.server_timeout_ms),
        ("grpc.http2.ping_timeout_ms", policy.server_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", min(1_000, policy.client_time_ms)),
        ("grpc.http2.min_time_between_pings_ms", min(1_000, policy.client_time_ms)),
        ("grpc.max_connection_age_ms", policy.max_connection_age_ms),
        ("grpc.max_connection_age_grace_ms", policy.max_connection_age_grace_ms),
        ("grpc.max_receive_message_length", max_message_bytes),
        # What the hub receives is bounded tightly; what it sends (fleet-wide reports for
        # operators) grows with the fleet.
        ("grpc.max_send_message_length", MAX_REPORT_BYTES),
        ("grpc.so_reuseport", 0),
    ]
