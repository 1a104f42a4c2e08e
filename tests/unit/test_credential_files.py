"""Credential files on disk: last-good-safe swaps on the node, CA rollover on the hub,
the revocation store (real files, real SQLite)."""

import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from agent.pki import credentials
from edgecommon import pki
from edgecommon.config import load
from edgecommon.errors import CredentialError
from edgecommon.identity import Identity, Kind
from hub.config import HubConfig
from hub.pki import credentials as hub_credentials
from hub.store.base import CertificateRecord, RevocationRecord
from hub.store.sqlite import SqliteStore

NODE = Identity(Kind.NODE, "node-1", "site-a")
NOW = dt.datetime.now(dt.UTC)


def signed(ca, key) -> bytes:  # type: ignore[no-untyped-def]
    ca_key, ca_cert = ca
    return pki.pem(
        pki.issue_for_key(ca_key, ca_cert, key, NODE, "edge", NOW, dt.timedelta(hours=1))
    )


@pytest.fixture
def ca():  # type: ignore[no-untyped-def]
    return pki.create_ca("edge", NOW, dt.timedelta(days=1))


@pytest.fixture
def enrolled(tmp_path: Path, ca):  # type: ignore[no-untyped-def]
    paths = credentials.CredentialPaths.under(tmp_path)
    key = pki.generate_key()
    credentials.save(paths, key, signed(ca, key), pki.pem(ca[1]))
    return paths


def test_save_writes_a_private_key_and_a_matching_pair(enrolled, ca) -> None:  # type: ignore[no-untyped-def]
    assert stat.S_IMODE(enrolled.key.stat().st_mode) == 0o600
    creds = credentials.load(enrolled)
    assert creds.identity == NODE
    assert not enrolled.next_key.exists()
    assert not enrolled.next_cert.exists()


def test_a_bad_answer_never_replaces_the_last_good_key(enrolled, ca) -> None:  # type: ignore[no-untyped-def]
    before = enrolled.key.read_bytes(), enrolled.cert.read_bytes()
    other_ca = pki.create_ca("edge", NOW, dt.timedelta(days=1))
    key = pki.generate_key()
    for cert_pem, bundle_pem, words in [
        (signed(ca, pki.generate_key()), pki.pem(ca[1]), "another key"),
        (signed(other_ca, key), pki.pem(ca[1]), "not signed by a CA"),
        (b"garbage", pki.pem(ca[1]), "not valid PEM"),
    ]:
        with pytest.raises(CredentialError, match=words):
            credentials.save(enrolled, key, cert_pem, bundle_pem)
        assert (enrolled.key.read_bytes(), enrolled.cert.read_bytes()) == before


def test_a_swap_interrupted_between_the_renames_is_finished(enrolled, ca) -> None:  # type: ignore[no-untyped-def]
    key = pki.generate_key()
    pki.write_private_key(enrolled.next_key, key)
    pki.write_certificates(enrolled.next_cert, [pki.load_pem_certificate(signed(ca, key), "t")])
    os.replace(enrolled.next_cert, enrolled.cert)  # crash here: new cert, old key
    creds = credentials.load(enrolled)
    assert pki.key_matches(key, creds.cert)
    assert not enrolled.next_key.exists()


def test_an_unfinished_swap_without_a_certificate_is_discarded(enrolled) -> None:  # type: ignore[no-untyped-def]
    before = enrolled.key.read_bytes()
    pki.write_private_key(enrolled.next_key, pki.generate_key())
    credentials.load(enrolled)
    assert enrolled.key.read_bytes() == before
    assert not enrolled.next_key.exists()


def hub_config(tmp_path: Path) -> HubConfig:
    (tmp_path / "hub.toml").write_text(f'[hub]\nstate_dir = "{tmp_path / "state"}"\n')
    return load(HubConfig, tmp_path / "hub.toml", {})


def test_ca_rotation_keeps_the_old_ca_trusted_and_the_server_certificate(tmp_path: Path) -> None:
    config = hub_config(tmp_path)
    first = hub_credentials.load_or_create(config, NOW.timestamp())
    rotated = hub_credentials.rotate_ca(first, config, NOW.timestamp())
    assert rotated.ca_cert != first.ca_cert
    assert rotated.trusted == (first.ca_cert, rotated.ca_cert)
    assert rotated.serving_ca == first.ca_cert
    again = hub_credentials.load_or_create(config, NOW.timestamp())
    assert again.ca_cert == rotated.ca_cert
    assert again.trusted == rotated.trusted
    assert again.server_cert == first.server_cert
    retired = hub_credentials.retire_old_cas(again, config, NOW.timestamp())
    assert retired.trusted == (rotated.ca_cert,)
    assert retired.serving_ca == rotated.ca_cert
    assert hub_credentials.load_or_create(config, NOW.timestamp()).trusted == (rotated.ca_cert,)


def test_a_rollover_interrupted_after_the_certificate_rename_is_finished(tmp_path: Path) -> None:
    config = hub_config(tmp_path)
    first = hub_credentials.load_or_create(config, NOW.timestamp())
    paths = hub_credentials.CredentialPaths.under(config.hub.state_dir)
    key, cert = pki.create_ca("edge", NOW, dt.timedelta(days=1))
    pki.write_private_key(paths.next_key, key)
    pki.write_certificates(paths.trust, [first.ca_cert, cert])
    pki.write_certificates(paths.ca_cert, [cert])  # crash before the key rename
    loaded = hub_credentials.load_or_create(config, NOW.timestamp())
    assert loaded.ca_cert == cert
    assert pki.key_matches(loaded.ca_key, cert)
    assert loaded.trusted == (first.ca_cert, cert)


def test_a_corrupt_trust_bundle_is_named(tmp_path: Path) -> None:
    config = hub_config(tmp_path)
    hub_credentials.load_or_create(config, NOW.timestamp())
    paths = hub_credentials.CredentialPaths.under(config.hub.state_dir)
    paths.trust.write_text("nonsense")
    with pytest.raises(CredentialError, match=str(paths.trust)):
        hub_credentials.load_or_create(config, NOW.timestamp())


async def test_revocations_and_renewal_errors_persist(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    await store.record_certificate(
        CertificateRecord("s1", "node", "n1", "g", 10.0, 1.0, "fp", "cafp")
    )
    revocation = RevocationRecord("s1", "node", "n1", "g", "stolen", "admin", 5.0)
    await store.add_revocations([revocation, revocation])
    await store.put_renewal_error("n1", "bad csr", 6.0)
    await store.close()
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    try:
        assert await store.list_revocations() == [revocation]
        assert (await store.list_certificates())[0].ca_fingerprint == "cafp"
        assert await store.list_renewal_errors() == {"n1": ("bad csr", 6.0)}
        await store.put_renewal_error("n1", "", 7.0)
        assert await store.list_renewal_errors() == {}
    finally:
        await store.close()
