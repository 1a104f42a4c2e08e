"""Certificate lifecycle with real processes: inspect, rotation without a drop, revocation,
re-enrollment, CA rollover, bad renewals, INV-PKI-01."""

import asyncio
import concurrent.futures
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from edgecommon import grpcopts, pki
from edgecommon.identity import Identity, Kind
from edgecommon.pb import (
    certs_pb2,
    certs_pb2_grpc,
    link_pb2,
    link_pb2_grpc,
    replication_pb2,
    replication_pb2_grpc,
)
from edgecommon.peerwire import peer_options
from tests.integration.test_replication import (
    NODES,
    append,
    quorum,
    read,
    replica_status,
    start_group,
)
from tests.keycheck import secret_needles
from tests.procs import ROOT, Fleet, clean_env, wait_until

FAST_RENEWAL = "[renewal]\ntrust_check_interval_s = 0.3\nrollover_spread_s = 0.5\n"


def pki_dir(fleet: Fleet, node: str) -> Path:
    return fleet.agent_dir(node) / "state" / "pki"


def node_files(fleet: Fleet, node: str) -> tuple[bytes, bytes, bytes]:
    d = pki_dir(fleet, node)
    return (d / "node.key").read_bytes(), (d / "node.crt").read_bytes(), (d / "ca.crt").read_bytes()


def node_channel(fleet: Fleet, node: str) -> grpc.aio.Channel:
    key, cert, bundle = node_files(fleet, node)
    creds = grpc.ssl_channel_credentials(bundle, key, cert)
    return grpc.aio.secure_channel(
        fleet.listen, creds, options=grpcopts.client_options(private_connection=True)
    )


def start_connected(fleet: Fleet, node: str, extra: str = FAST_RENEWAL) -> dict:
    fleet.start_agent(node, fleet.token(node), extra=extra)
    return fleet.wait_connected(node)


def status(fleet: Fleet, node: str) -> dict:
    s = fleet.agent_status(node)
    assert s is not None
    return s


def assert_no_key_material(fleet: Fleet, texts: list[str]) -> None:
    """INV-PKI-01: key files are 0600; no PEM private key header and no encoding of any
    key's secret appears in `texts`."""
    keys = [
        fleet.hub_state / "pki" / "ca.key",
        fleet.hub_state / "pki" / "hub.key",
        fleet.context / "operator.key",
        *sorted(fleet.root.glob("*/state/pki/node.key")),
        *sorted(fleet.root.glob("*/operator.key")),
    ]
    for key in keys:
        if key.exists():
            assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    needles = [n for k in keys if k.exists() for n in secret_needles(k)]
    for text in texts:
        assert "PRIVATE KEY" not in text
        for needle in needles:
            assert needle not in text


def logs(fleet: Fleet) -> list[str]:
    return [fleet.hub.output(), *(p.output() for p in fleet.agents.values())]


def test_cert_inspect_shows_public_facts_only(running_fleet: Fleet) -> None:
    fleet = running_fleet
    start_connected(fleet, "node-a")
    result = fleet.edgectl(
        "--output", "json", "cert", "inspect", "--socket", str(fleet.socket("node-a"))
    )
    assert result.code == 0, result.stderr
    info = result.json
    assert info["subject"] == "CN=node-a"
    assert info["sans"] == ["spiffe://edge/node/site-a/node-a"]
    assert info["key_type"] == "EC P-256"
    assert len(info["sha256_fingerprint"]) == 64
    assert 2.9 < info["days_left"] <= 3.0  # 72 h default lifetime
    assert info["renewal"]["state"] == "scheduled"
    assert info["renewal"]["next_renewal"] is not None
    table = fleet.edgectl("cert", "inspect", "--socket", str(fleet.socket("node-a")))
    assert "Renewal:" in table.stdout
    assert "SHA-256:" in table.stdout
    operator = fleet.edgectl("--output", "json", "cert", "inspect", "--operator")
    assert operator.code == 0
    assert operator.json["sans"] == ["spiffe://edge/operator/admin"]
    missing = fleet.edgectl("cert", "inspect", "--file", str(fleet.root / "nope.crt"))
    assert missing.code == 1
    assert "nope.crt does not exist" in missing.stderr
    assert_no_key_material(fleet, [result.stdout, table.stdout, operator.stdout, *logs(fleet)])


def test_rotation_under_load_keeps_the_stream_heartbeats_and_estop(running_fleet: Fleet) -> None:
    """Every rotation: a new key and serial, the link never leaves 'connected', no handover
    fails, heartbeats keep flowing and an emergency stop engaged between rotations is
    acknowledged."""
    fleet = running_fleet
    first = start_connected(fleet, "node-a")
    since = first["hub"]["since"]
    sock = str(fleet.socket("node-a"))
    serials, keys = {first["certificate"]["serial"]}, {node_files(fleet, "node-a")[0]}
    for round_ in range(4):
        beats = status(fleet, "node-a")["hub"]["heartbeats_sent"]
        result = fleet.edgectl("--output", "json", "cert", "rotate", "--socket", sock)
        assert result.code == 0, result.stderr
        serials.add(result.json["serial"])
        keys.add(node_files(fleet, "node-a")[0])
        if round_ == 1:
            engaged = fleet.edgectl(
                "estop", "engage", "--scope", "node:node-a", "--reason", "drill", "--wait"
            )
            assert engaged.code == 0, engaged.stderr
        wait_until(
            "heartbeats continue",
            lambda b=beats: status(fleet, "node-a")["hub"]["heartbeats_sent"] > b + 1,
        )
    after = status(fleet, "node-a")
    assert len(serials) == 5
    assert len(keys) == 5
    assert after["hub"]["state"] == "connected"
    assert after["hub"]["since"] == since
    assert after["certificate"]["handovers"] == 4
    assert after["certificate"]["handover_failures"] == 0
    estop = fleet.edgectl("--output", "json", "estop", "status", "--local", "--socket", sock)
    assert estop.code == 0
    assert estop.json["stopped"] is True
    node = fleet.node("node-a")
    assert node["cert_serial"] == after["certificate"]["serial"]
    assert node["state"] == "online"
    listed = fleet.edgectl("--output", "json", "cert", "list", "--kind", "node").json
    current = [c for c in listed if c["current"]]
    assert [c["serial"] for c in current] == [after["certificate"]["serial"]]
    assert "node node-a (group site-a) is offline" not in fleet.hub.output()
    renewals = fleet.edgectl(
        "-o", "json", "audit", "query", "--action", "cert.renew", "--target", "node:node-a"
    ).json["events"]
    assert [e["outcome"] for e in renewals].count("success") == 4
    assert_no_key_material(fleet, logs(fleet))


async def test_revoked_certificate_is_refused_at_the_next_rpc_and_the_node_re_enrolls(
    running_fleet: Fleet,
) -> None:
    fleet = running_fleet
    start_connected(fleet, "node-a")
    sock = str(fleet.socket("node-a"))
    assert (
        fleet.edgectl("estop", "engage", "--local", "--reason", "kept", "--socket", sock).code == 0
    )
    old_serial = status(fleet, "node-a")["certificate"]["serial"]
    async with node_channel(fleet, "node-a") as channel:
        stub = link_pb2_grpc.LinkStub(channel)
        await stub.RenewLease(link_pb2.RenewLeaseRequest(), timeout=5)  # connection is open
        revoked = fleet.edgectl(
            "--output",
            "json",
            "cert",
            "revoke",
            "--node",
            "node-a",
            "--reason",
            "stolen",
            "--force",
        )
        assert revoked.code == 0, revoked.stderr
        assert revoked.json["revoked"][0]["serial"] == old_serial
        assert revoked.json["streams_closed"] == 1
        # The very next call on the same, still open connection is refused.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RenewLease(link_pb2.RenewLeaseRequest(), timeout=5)
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in err.value.details()
        assert "stolen" in err.value.details()
        csr = pki.build_csr(pki.generate_key(), Identity(Kind.NODE, "node-a", "site-a"), "edge")
        with pytest.raises(grpc.aio.AioRpcError) as renew:
            await certs_pb2_grpc.CertsStub(channel).Renew(
                certs_pb2.RenewRequest(csr_pem=csr), timeout=5
            )
        assert renew.value.code() is grpc.StatusCode.UNAUTHENTICATED

    def not_ready() -> dict | None:
        s = status(fleet, "node-a")
        return s if not s["ready"] and "revoked" in (s["not_ready_reason"] or "") else None

    s = wait_until("agent reports the revocation", not_ready)
    assert s["hub"]["state"] != "connected"
    node = fleet.node("node-a")
    assert node["cert_revoked"] is True
    assert node["state"] == "offline"
    assert "revoked" in node["state_reason"]
    listed = fleet.edgectl("--output", "json", "cert", "list", "--all").json
    entry = next(c for c in listed if c["serial"] == old_serial)
    assert entry["revoked"]
    assert entry["revoke_reason"] == "stolen"
    assert entry["revoked_by"] == "admin"
    again = fleet.edgectl("cert", "revoke", "--serial", old_serial, "--reason", "x", "--force")
    assert again.code == 1
    assert "already revoked" in again.stderr
    trail = fleet.edgectl("-o", "json", "audit", "query", "--action", "cert.revoke").json["events"]
    assert [(e["target"], e["outcome"]) for e in trail][-4:] == [
        ("node:node-a", "attempt"),
        ("node:node-a", "success"),
        (f"serial:{old_serial}", "attempt"),
        (f"serial:{old_serial}", "failure"),
    ]
    assert trail[0]["reason"] == "stolen"

    # Re-enrollment with a fresh token keeps the node's state (its latched local stop).
    (fleet.agent_dir("node-a") / "token").write_text(fleet.token("node-a"))
    back = fleet.wait_connected("node-a")
    assert back["ready"]
    assert back["certificate"]["serial"] != old_serial
    estop = fleet.edgectl("--output", "json", "estop", "status", "--local", "--socket", sock).json
    assert estop["stopped"] is True
    # The hub restarted keeps the revocation.
    fleet.hub.stop()
    fleet.start_hub()
    listed = fleet.edgectl("--output", "json", "cert", "list", "--all").json
    assert next(c for c in listed if c["serial"] == old_serial)["revoked"]
    assert_no_key_material(fleet, [revoked.stdout, *logs(fleet)])


def test_ca_rollover_end_to_end(running_fleet: Fleet) -> None:
    """rotate -> nodes fetch the bundle and renew onto the new CA (one only when told,
    as if mid-renewal) -> retire-old refused while it lags -> retire-old -> the hub serves
    from the new CA and nodes reconnect after a restart; chains pass openssl verify."""
    fleet = running_fleet
    start_connected(fleet, "node-a")
    start_connected(fleet, "node-b")
    lagging = "[renewal]\ntrust_check_interval_s = 0.3\nrollover_spread_s = 3600\n"
    start_connected(fleet, "node-c", extra=lagging)
    # node-a renews (three times in a row) while the CA rotates under it.
    renewing = concurrent.futures.ThreadPoolExecutor(1).submit(
        lambda: [
            fleet.edgectl("cert", "rotate", "--socket", str(fleet.socket("node-a"))).code
            for _ in range(3)
        ]
    )
    rotated = fleet.edgectl("--output", "json", "ca", "rotate", "--force")
    assert rotated.code == 0, rotated.stderr
    assert renewing.result(timeout=60) == [0, 0, 0]
    cas = rotated.json["cas"]
    assert len(cas) == 2
    assert [c["signing"] for c in cas] == [False, True]
    new_ca = cas[1]["fingerprint"]

    def on_new(expected: set[str]) -> dict | None:
        report = fleet.edgectl("--output", "json", "ca", "status").json
        new = next(c for c in report["cas"] if c["fingerprint"] == new_ca)
        return report if set(new["node_ids"]) == expected else None

    wait_until("node-a and node-b on the new CA", lambda: on_new({"node-a", "node-b"}))
    own = fleet.edgectl("ca", "retire-old")
    assert own.code == 1
    assert "your own operator certificate" in own.stderr
    # The operator renews its own credential onto the new CA before retiring the old one.
    assert fleet.edgectl("cert", "rotate", "--operator").code == 0
    refused = fleet.edgectl("ca", "retire-old")
    assert refused.code == 1
    assert "node-c" in refused.stderr
    rotate_c = fleet.edgectl("cert", "rotate", "--socket", str(fleet.socket("node-c")))
    assert rotate_c.code == 0, rotate_c.stderr
    wait_until("all nodes on the new CA", lambda: on_new({"node-a", "node-b", "node-c"}))
    retired = fleet.edgectl("--output", "json", "ca", "retire-old")
    assert retired.code == 0, retired.stderr
    assert [c["fingerprint"] for c in retired.json["cas"]] == [new_ca]
    assert retired.json["cas"][0]["serving"] is True
    for node in ("node-a", "node-b", "node-c"):
        s = status(fleet, node)
        assert s["hub"]["state"] == "connected"
        assert s["certificate"]["handover_failures"] == 0
    fleet.hub.stop()
    fleet.start_hub()
    for node in ("node-a", "node-b", "node-c"):
        fleet.wait_connected(node)
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: chains not checked with openssl verify")
    for node in ("node-a", "node-b", "node-c"):
        d = pki_dir(fleet, node)
        done = subprocess.run(
            ["openssl", "verify", "-CAfile", str(d / "ca.crt"), str(d / "node.crt")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert ": OK" in done.stdout
    assert_no_key_material(fleet, logs(fleet))


async def test_bad_renewals_are_refused_and_change_nothing(running_fleet: Fleet) -> None:
    fleet = running_fleet
    start_connected(fleet, "node-a")
    start_connected(fleet, "node-b")
    before = fleet.edgectl("--output", "json", "cert", "list").json
    key, _cert_pem, _ = node_files(fleet, "node-a")
    current_key = pki.load_private_key(pki_dir(fleet, "node-a") / "node.key")
    other = Identity(Kind.NODE, "node-b", "site-a")
    me = Identity(Kind.NODE, "node-a", "site-a")
    weak = rsa.generate_private_key(65537, 1024)
    cases = [
        (pki.build_csr(pki.generate_key(), other, "edge"), "allows only"),
        (
            pki.build_csr(pki.generate_key(), Identity(Kind.NODE, "node-a", "site-b"), "edge"),
            "allows only",
        ),
        (pki.build_csr(weak, me, "edge"), "too weak"),  # type: ignore[arg-type]
        (pki.build_csr(current_key, me, "edge"), "new key"),
        (b"not a csr", "not a PEM"),
    ]
    async with node_channel(fleet, "node-a") as channel:
        stub = certs_pb2_grpc.CertsStub(channel)
        for csr, words in cases:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Renew(certs_pb2.RenewRequest(csr_pem=csr), timeout=5)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, words
            assert words in err.value.details()
    after = fleet.edgectl("--output", "json", "cert", "list").json
    assert [c["serial"] for c in after] == [c["serial"] for c in before]
    assert any(c["renewal_error"] for c in after if c["subject"] == "node-a")
    assert "not a PEM" in fleet.node("node-a")["cert_renewal_error"]
    assert node_files(fleet, "node-a")[0] == key
    assert status(fleet, "node-a")["hub"]["state"] == "connected"
    bad = [
        fleet.edgectl("cert", "revoke", "--reason", "x", "--force"),
        fleet.edgectl(
            "cert", "revoke", "--node", "node-a", "--serial", "ab", "--reason", "x", "--force"
        ),
        fleet.edgectl("cert", "revoke", "--node", "node-a", "--reason", " ", "--force"),
        fleet.edgectl("cert", "revoke", "--node", "Bad Name", "--reason", "x", "--force"),
        fleet.edgectl("cert", "list", "--expiring-within", "soon"),
    ]
    assert [r.code for r in bad] == [2, 2, 2, 2, 2], [r.stderr for r in bad]
    assert (
        fleet.edgectl("cert", "revoke", "--serial", "abc123", "--reason", "x", "--force").code == 1
    )
    assert fleet.edgectl("cert", "revoke", "--node", "node-a", "--reason", "x").code == 2  # no tty


def test_corrupt_key_or_bundle_on_disk_is_named_and_not_overwritten(running_fleet: Fleet) -> None:
    fleet = running_fleet
    start_connected(fleet, "node-a")
    fleet.agents["node-a"].stop()
    config = fleet.agent_dir("node-a") / "agent.toml"
    key_file = pki_dir(fleet, "node-a") / "node.key"
    bundle = pki_dir(fleet, "node-a") / "ca.crt"
    good_key, good_bundle = key_file.read_bytes(), bundle.read_bytes()

    def check_config() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent.main", "--check-config", "--config", str(config)],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
            env=clean_env(),
        )

    key_file.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n")
    key_file.chmod(0o600)
    proc = fleet.start_agent("node-a", config=config)
    wait_until("agent exits", lambda: not proc.running())
    assert proc.popen is not None
    assert proc.popen.returncode == 1
    assert f"key file {key_file} is not a readable PEM private key" in proc.output()
    assert key_file.read_bytes() == b"-----BEGIN PRIVATE KEY-----\ngarbage\n"
    checked = check_config()
    assert checked.returncode == 1
    assert str(key_file) in checked.stderr
    key_file.write_bytes(good_key)
    bundle.write_text("not pem")
    checked = check_config()
    assert checked.returncode == 1
    assert f"trust bundle {bundle}" in checked.stderr
    bundle.write_bytes(good_bundle)
    assert check_config().returncode == 0
    fleet.start_agent("node-a", config=config)
    fleet.wait_connected("node-a")


def test_expired_while_offline_reports_why_and_re_enrolls_keeping_state(fleet: Fleet) -> None:
    fleet.start_hub(extra="[certs]\nnode_lifetime_h = 0.004\nmax_connection_age_s = 2\n")
    fleet.bootstrap_operator()
    # Renewal is due at ~60 % of 14 s; with the hub gone the certificate expires.
    start_connected(
        fleet,
        "node-a",
        extra="[renewal]\navailability_target_h = 0.001\nretry_initial_s = 0.5\nretry_max_s = 1\n",
    )
    sock = str(fleet.socket("node-a"))
    assert (
        fleet.edgectl("estop", "engage", "--local", "--reason", "kept", "--socket", sock).code == 0
    )
    fleet.hub.stop()

    def expired() -> dict | None:
        s = status(fleet, "node-a")
        return s if "expired" in (s["not_ready_reason"] or "") else None

    s = wait_until("agent sees its own certificate expired", expired, timeout_s=60)
    assert not s["ready"]
    assert s["certificate"]["last_renewal_error"]
    fleet.start_hub()
    s = wait_until("still not ready with the hub back", expired)
    assert "re-enroll" in s["not_ready_reason"]
    (fleet.agent_dir("node-a") / "token").write_text(fleet.token("node-a"))
    back = fleet.wait_connected("node-a")
    assert back["ready"]
    assert fleet.edgectl("--output", "json", "estop", "status", "--local", "--socket", sock).json[
        "stopped"
    ]


def test_air_gapped_bundle_enrolls_a_node_and_holds_no_key(running_fleet: Fleet) -> None:
    fleet = running_fleet
    bundle = fleet.root / "bundle"
    issued = fleet.edgectl(
        "--output",
        "json",
        "cert",
        "issue",
        "--node",
        "node-z",
        "--group",
        "site-b",
        "--out",
        str(bundle),
    )
    assert issued.code == 0, issued.stderr
    assert sorted(p.name for p in bundle.iterdir()) == ["ca.crt", "join-token"]
    assert stat.S_IMODE((bundle / "join-token").stat().st_mode) == 0o600
    again = fleet.edgectl(
        "cert", "issue", "--node", "node-z", "--group", "site-b", "--out", str(bundle)
    )
    assert again.code == 2
    assert "not empty" in again.stderr
    config = fleet.write_agent_config("node-z", None)
    config.write_text(
        config.read_text().replace(
            "[agent]\n", f'[agent]\njoin_token_file = "{bundle / "join-token"}"\n', 1
        )
    )
    fleet.start_agent("node-z", config=config)
    assert fleet.wait_connected("node-z")["group"] == "site-b"
    texts = [issued.stdout, *(p.read_text() for p in bundle.iterdir()), *logs(fleet)]
    assert_no_key_material(fleet, texts)


def test_stream_moves_to_a_fresh_connection_before_the_hub_ages_it_out(fleet: Fleet) -> None:
    """With the hub closing connections after 2 s, the agent moves its stream every 0.5 s:
    it never leaves 'connected' and the hub never sees it go offline."""
    fleet.start_hub(extra="[certs]\nmax_connection_age_s = 2\n")
    fleet.bootstrap_operator()
    config = fleet.write_agent_config("node-a", fleet.token("node-a"))
    config.write_text(config.read_text().replace("[link]\n", "[link]\nstream_refresh_s = 0.5\n"))
    fleet.start_agent("node-a", config=config)
    first = fleet.wait_connected("node-a")
    wait_until(
        "several moves",
        lambda: status(fleet, "node-a")["certificate"]["handovers"] >= 6,
    )
    after = status(fleet, "node-a")
    assert after["hub"]["since"] == first["hub"]["since"]
    assert after["hub"]["state"] == "connected"
    assert after["certificate"]["handover_failures"] == 0
    assert "node node-a (group site-a) is offline" not in fleet.hub.output()


def test_revoked_operator_is_refused_and_listed(running_fleet: Fleet) -> None:
    fleet = running_fleet
    token = fleet.edgectl("--output", "json", "token", "create", "--operator", "bob").json["token"]
    bob = fleet.root / "bob"
    login = fleet.edgectl(
        "--context",
        str(bob),
        "login",
        "--token",
        token,
        "--hub",
        fleet.listen,
        "--enroll-address",
        fleet.enroll,
        "--dir",
        str(bob),
    )
    assert login.code == 0, login.stderr
    assert fleet.edgectl("--context", str(bob), "operator", "whoami").code == 0
    inspect = fleet.edgectl(
        "--context", str(bob), "--output", "json", "cert", "inspect", "--operator"
    )
    assert inspect.json["sans"] == ["spiffe://edge/operator/bob"]
    revoked = fleet.edgectl("cert", "revoke", "--operator", "bob", "--reason", "left", "--force")
    assert revoked.code == 0, revoked.stderr
    refused = fleet.edgectl("--context", str(bob), "operator", "whoami")
    assert refused.code == 4
    assert "revoked" in refused.stderr
    listed = fleet.edgectl("--output", "json", "cert", "list", "--kind", "operator").json
    assert [c["revoked"] for c in listed if c["subject"] == "bob"] == [True]
    assert fleet.edgectl("operator", "whoami").code == 0  # admin is unaffected
    assert_no_key_material(fleet, [login.stdout, inspect.stdout, revoked.stdout, *logs(fleet)])


def test_rotate_with_the_hub_down_fails_clearly_and_keeps_the_key(running_fleet: Fleet) -> None:
    fleet = running_fleet
    start_connected(fleet, "node-a")
    key = node_files(fleet, "node-a")[0]
    fleet.hub.stop()
    result = fleet.edgectl("cert", "rotate", "--socket", str(fleet.socket("node-a")))
    assert result.code == 1
    assert "renewal failed" in result.stderr
    assert node_files(fleet, "node-a")[0] == key
    s = status(fleet, "node-a")
    assert s["certificate"]["renewal_state"] == "retrying"
    assert s["certificate"]["last_renewal_error"]
    assert s["certificate"]["renewal_failures"] == 1
    fleet.start_hub()
    fleet.wait_connected("node-a")
    assert fleet.edgectl("cert", "rotate", "--socket", str(fleet.socket("node-a"))).code == 0
    assert status(fleet, "node-a")["certificate"]["renewal_failures"] == 0


# --- revocation reaches the agents' Peer service -------------------------------------


def _peer_stub(fleet: Fleet, node: str, address: str, leader: str) -> grpc.aio.Channel:
    key, cert, bundle = node_files(fleet, node)
    return grpc.aio.secure_channel(
        address, grpc.ssl_channel_credentials(bundle, key, cert), options=peer_options(leader)
    )


async def _refused(stub: replication_pb2_grpc.PeerStub, last: int) -> list[str]:
    """Pull, EntryHash and Snapshot on `stub`: the details of each refusal (all must be
    UNAUTHENTICATED)."""
    details = []
    for call in (
        lambda: stub.Pull(
            replication_pb2.PullRequest(after_index=0, after_hash=bytes(32)), timeout=5
        ),
        lambda: stub.EntryHash(replication_pb2.EntryHashRequest(index=last), timeout=5),
        lambda: anext(aiter(stub.Snapshot(replication_pb2.SnapshotRequest(), timeout=5))),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call()
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED, err.value
        details.append(err.value.details() or "")
    return details


async def _revoke_during_a_long_poll(fleet: Fleet, victim: str, leader: str, address: str) -> None:
    async with _peer_stub(fleet, victim, address, leader) as channel:
        stub = replication_pb2_grpc.PeerStub(channel)
        assert (await stub.Snapshot(replication_pb2.SnapshotRequest(), timeout=5).read()).entries
        # Follow the leader as a replica does (everything sent on this pull stream) ...
        pulled = await stub.Pull(
            replication_pb2.PullRequest(after_index=0, after_hash=bytes(32)), timeout=5
        )
        last, digest = pulled.entries[-1].index, pulled.entries[-1].hash
        assert last == pulled.leader_last_index
        # ... then long-poll: a long poll in flight when the certificate is revoked is
        # ended, not answered.
        waiting = asyncio.ensure_future(
            stub.Pull(
                replication_pb2.PullRequest(
                    after_index=last,
                    after_hash=digest,
                    wait_s=5.0,
                    stream_token=pulled.stream_token,
                ),
                timeout=10,
            )
        )
        await asyncio.sleep(0.5)
        revoked = await asyncio.to_thread(
            fleet.edgectl, "cert", "revoke", "--node", victim, "--reason", "lost", "--force"
        )
        assert revoked.code == 0, revoked.stderr
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await waiting
        assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in (ended.value.details() or "")
        # Every call on the connection opened before the revoke is refused ...
        assert all("revoked" in d for d in await _refused(stub, last))
    # ... and on a new one.
    async with _peer_stub(fleet, victim, address, leader) as channel:
        stub = replication_pb2_grpc.PeerStub(channel)
        assert all("revoked" in d for d in await _refused(stub, last))


async def _refused_on_a_new_connection(fleet: Fleet, victim: str, leader: str, address: str) -> str:
    async with _peer_stub(fleet, victim, address, leader) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await replication_pb2_grpc.PeerStub(channel).EntryHash(
                replication_pb2.EntryHashRequest(index=0), timeout=5
            )
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
        return err.value.details() or ""


def test_revoked_certificate_is_refused_by_the_peer_service_on_open_and_new_connections(
    fleet: Fleet,
) -> None:
    """The hub pushes its revoked serials to every agent: the leader's Peer service refuses
    the revoked node on every call (a long poll in flight ends), the node stops getting
    entries, and the list survives the leader's restart with the hub down."""
    start_group(fleet)
    q = quorum(fleet)
    leader, sync = q["leader"], q["sync_set"][0]
    victim = next(n for n in NODES if n not in (leader, sync))  # so appends still commit
    assert append(fleet, leader, "k", "before").code == 0
    wait_until(f"{victim} has entry 1", lambda: read(fleet, victim)["last_index"] == 1)
    address = replica_status(fleet, leader)["peer_address"]
    asyncio.run(_revoke_during_a_long_poll(fleet, victim, leader, address))
    assert append(fleet, leader, "k", "after").code == 0
    wait_until(
        f"{victim} is refused by the leader",
        lambda: "UNAUTHENTICATED" in ((replica_status(fleet, victim) or {}).get("detail") or ""),
    )
    assert read(fleet, victim)["last_index"] == 1  # it never got entry 2
    assert read(fleet, sync)["last_index"] == 2
    # Persisted on the leader: restarted while the hub is down, it still refuses the node.
    fleet.hub.stop()
    fleet.agents[leader].stop()
    fleet.agents[leader].start()
    moved = wait_until(
        "the leader's Peer service is back",
        lambda: (s := replica_status(fleet, leader)) and s["peer_address"],
    )
    assert "revoked" in asyncio.run(_refused_on_a_new_connection(fleet, victim, leader, moved))
