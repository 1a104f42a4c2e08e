"""Bad input at the link: each gets a clear error and changes nothing stored."""

import datetime as dt
import time
from dataclasses import replace

import grpc
import pytest

from edgecommon import pki, tokens
from edgecommon.enroll_client import request_certificate
from edgecommon.errors import InvalidArgument, PermissionDenied
from edgecommon.identity import Identity, Kind
from edgecommon.pb import fleet_pb2, fleet_pb2_grpc, link_pb2, link_pb2_grpc
from hub.pki.credentials import CredentialPaths, load_ca
from tests.procs import Fleet, wait_until


def refused(fleet: Fleet, node: str, words: str) -> dict:
    def check() -> dict | None:
        status = fleet.agent_status(node)
        return status if status and words in (status["hub"]["last_error"] or "") else None

    return wait_until(f"{node} refused with {words!r}", check)


def enrolled_nodes(fleet: Fleet) -> list[str]:
    return [n["node_id"] for n in fleet.fleet_status()["nodes"]]


def test_reused_token_is_refused_and_changes_nothing(running_fleet: Fleet) -> None:
    fleet = running_fleet
    token = fleet.token("node-a")
    fleet.start_agent("node-a", token)
    fleet.wait_connected("node-a")
    fleet.start_agent("node-b", token)
    status = refused(fleet, "node-b", "already used")
    assert status["node_id"] is None
    assert "edgectl token create" in status["hub"]["last_error"]
    assert enrolled_nodes(fleet) == ["node-a"]


def test_expired_token_is_refused(running_fleet: Fleet) -> None:
    fleet = running_fleet
    token = fleet.token("node-a", ttl="1s")
    time.sleep(1.2)
    fleet.start_agent("node-a", token)
    refused(fleet, "node-a", "expired")
    assert enrolled_nodes(fleet) == []


def test_malformed_token_stops_the_agent_with_a_clear_error(running_fleet: Fleet) -> None:
    agent = running_fleet.start_agent("node-a", "edge1.not-a-token")
    assert agent.popen.wait(30) == 1
    assert "join token is malformed" in agent.output()


def test_token_of_another_hub_is_refused(running_fleet: Fleet) -> None:
    fleet = running_fleet
    _, other_ca = pki.create_ca("edge", dt.datetime.now(dt.UTC), dt.timedelta(days=1))
    genuine = tokens.parse_token(fleet.token("node-a"))
    forged = replace(genuine, ca=other_ca)
    fleet.start_agent("node-a", forged.encode())
    # The agent trusts only the CA in its token, so it cannot even complete the handshake.
    refused(fleet, "node-a", "unreachable")
    assert enrolled_nodes(fleet) == []


async def test_inv_pki_01_csr_for_another_node_is_rejected_and_the_token_survives(
    running_fleet: Fleet,
) -> None:
    fleet = running_fleet
    genuine = tokens.parse_token(fleet.token("node-a"))
    other = replace(genuine, subject=Identity(Kind.NODE, "node-z", "site-a"))
    # The forged token text still carries the genuine id and secret.
    with pytest.raises(InvalidArgument, match="allows only"):
        await request_certificate(fleet.enroll, other, pki.generate_key(), 10)
    other_group = replace(genuine, subject=Identity(Kind.NODE, "node-a", "site-b"))
    with pytest.raises(InvalidArgument, match="allows only"):
        await request_certificate(fleet.enroll, other_group, pki.generate_key(), 10)
    assert enrolled_nodes(fleet) == []
    answer = await request_certificate(fleet.enroll, genuine, pki.generate_key(), 10)
    assert answer.subject_id == "node-a"
    with pytest.raises(PermissionDenied, match="already used"):
        await request_certificate(fleet.enroll, genuine, pki.generate_key(), 10)


def _operator_channel(fleet: Fleet, address: str, key: bytes | None, cert: bytes | None):
    ca = (fleet.hub_state / "pki" / "ca.crt").read_bytes()
    return grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(ca, key, cert))


async def _fleet_status(fleet: Fleet, address: str, key: bytes | None, cert: bytes | None):
    async with _operator_channel(fleet, address, key, cert) as channel:
        return await fleet_pb2_grpc.FleetStub(channel).FleetStatus(
            fleet_pb2.FleetStatusRequest(), timeout=5
        )


def _key_pem(key: pki.PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


async def test_client_without_certificate_is_refused(running_fleet: Fleet) -> None:
    fleet = running_fleet
    with pytest.raises(grpc.aio.AioRpcError) as handshake:
        await _fleet_status(fleet, fleet.listen, None, None)
    assert handshake.value.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as no_identity:
        await _fleet_status(fleet, fleet.enroll, None, None)
    assert no_identity.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "no client certificate" in no_identity.value.details()


async def test_certificate_from_another_ca_is_refused(running_fleet: Fleet) -> None:
    fleet = running_fleet
    now = dt.datetime.now(dt.UTC)
    other_key, other_ca = pki.create_ca("edge", now, dt.timedelta(days=1))
    key = pki.generate_key()
    cert = pki.issue_for_key(
        other_key,
        other_ca,
        key,
        Identity(Kind.OPERATOR, "admin"),
        "edge",
        now,
        dt.timedelta(hours=1),
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _fleet_status(fleet, fleet.listen, _key_pem(key), pki.pem(cert))
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_expired_certificate_is_refused(running_fleet: Fleet) -> None:
    fleet = running_fleet
    ca_key, ca_cert = load_ca(CredentialPaths.under(fleet.hub_state))
    key = pki.generate_key()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    cert = pki.issue_for_key(
        ca_key, ca_cert, key, Identity(Kind.OPERATOR, "admin"), "edge", past, dt.timedelta(hours=1)
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _fleet_status(fleet, fleet.listen, _key_pem(key), pki.pem(cert))
    assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def test_node_certificate_cannot_call_operator_rpcs(running_fleet: Fleet) -> None:
    fleet = running_fleet
    fleet.start_agent("node-a", fleet.token("node-a"))
    fleet.wait_connected("node-a")
    pki_dir = fleet.agent_dir("node-a") / "state" / "pki"
    node_ctx = fleet.root / "node-ctx"
    node_ctx.mkdir()
    for src, dst in (
        ("node.key", "operator.key"),
        ("node.crt", "operator.crt"),
        ("ca.crt", "ca.crt"),
    ):
        (node_ctx / dst).write_bytes((pki_dir / src).read_bytes())
        (node_ctx / dst).chmod(0o600)
    result = fleet.edgectl("--context", str(node_ctx), "--hub", fleet.listen, "fleet", "status")
    assert result.code == 4
    assert "needs a operator credential" in result.stderr or "operator credential" in result.stderr


async def test_inv_pki_01_node_identity_comes_from_the_certificate_not_the_message(
    running_fleet: Fleet,
) -> None:
    """A node presents node-a's certificate; nothing it sends can make it another node."""
    fleet = running_fleet
    ca_key, ca_cert = load_ca(CredentialPaths.under(fleet.hub_state))
    key = pki.generate_key()
    cert = pki.issue_for_key(
        ca_key,
        ca_cert,
        key,
        Identity(Kind.NODE, "node-a", "site-a"),
        "edge",
        dt.datetime.now(dt.UTC),
        dt.timedelta(hours=1),
    )
    ca = pki.pem(ca_cert)
    creds = grpc.ssl_channel_credentials(ca, _key_pem(key), pki.pem(cert))
    async with grpc.aio.secure_channel(fleet.listen, creds) as channel:
        call = link_pb2_grpc.LinkStub(channel).Connect(timeout=10)
        await call.write(
            link_pb2.AgentMessage(
                register=link_pb2.Register(
                    agent_version="x", hostname="i-am-node-b", labels={"node": "node-b"}
                )
            )
        )
        first = await call.read()
        assert first.registered.node_id == "node-a"
        call.cancel()
    nodes = enrolled_nodes(fleet)
    assert nodes == ["node-a"]


async def test_oversized_message_is_refused_and_the_hub_keeps_serving(
    running_fleet: Fleet,
) -> None:
    fleet = running_fleet
    genuine = tokens.parse_token(fleet.token("node-a"))
    with pytest.raises(Exception, match=r"(?i)resource|larger than max|exhausted"):
        await request_certificate(
            fleet.enroll,
            replace(genuine, token_id=genuine.token_id + "x" * 300_000),
            pki.generate_key(),
            10,
        )
    answer = await request_certificate(fleet.enroll, genuine, pki.generate_key(), 10)
    assert answer.subject_id == "node-a"


def test_edgectl_without_credential_says_how_to_get_one(running_fleet: Fleet) -> None:
    fleet = running_fleet
    empty = fleet.root / "empty-ctx"
    result = fleet.edgectl("--context", str(empty), "--hub", fleet.listen, "fleet", "status")
    assert result.code == 1
    assert "edgectl login" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
