"""The hub store contract on a real SQLite file: migrations, single-use tokens, nodes."""

from pathlib import Path

import pytest

from hub.store.base import CertificateRecord, NodeRecord, TokenRecord
from hub.store.migrations import all_migrations
from hub.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path):
    s = SqliteStore(tmp_path / "hub.db")
    await s.open()
    yield s
    await s.close()


def token(token_id: str = "t1", expires: float = 100.0) -> TokenRecord:
    return TokenRecord(token_id, "hash", "node", "node-1", "site-a", "admin", 0.0, expires)


def cert(serial: str) -> CertificateRecord:
    return CertificateRecord(serial, "node", "node-1", "site-a", 500.0, 10.0, "fp")


def node(state: str = "enrolled", seen: float = 0.0) -> NodeRecord:
    return NodeRecord(
        "node-1",
        "site-a",
        {"rack": "1"},
        "0.1",
        "h",
        "s1",
        500.0,
        10.0,
        seen,
        state,
        10.0,
        "enrolled",
    )


async def test_migrations_apply_once_and_are_versioned(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    for _ in range(2):
        s = SqliteStore(path)
        await s.open()
        assert await s.schema_version() == all_migrations()[-1].version
        await s.close()
    assert path.stat().st_mode & 0o777 == 0o600


async def test_token_redeems_exactly_once(store: SqliteStore) -> None:
    await store.add_token(token())
    assert await store.redeem_token("t1", 10.0, cert("s1"), node())
    assert not await store.redeem_token("t1", 11.0, cert("s2"), node())
    assert (await store.get_token("t1")).used_unix == 10.0
    assert [c.serial for c in await store.list_certificates()] == ["s1"]


async def test_expired_token_redeems_nothing(store: SqliteStore) -> None:
    await store.add_token(token(expires=5.0))
    assert not await store.redeem_token("t1", 10.0, cert("s1"), node())
    assert await store.get_node("node-1") is None
    assert await store.list_certificates() == []
    assert (await store.get_token("t1")).used_unix is None


async def test_failed_redeem_rolls_back_everything(store: SqliteStore) -> None:
    await store.add_token(token())
    await store.add_token(token("t2"))
    assert await store.redeem_token("t1", 10.0, cert("s1"), node())
    with pytest.raises(Exception, match="UNIQUE"):
        await store.redeem_token("t2", 10.0, cert("s1"), node())
    assert (await store.get_token("t2")).used_unix is None


async def test_nodes_upsert_and_list_by_group(store: SqliteStore) -> None:
    await store.save_nodes([node(), NodeRecord("node-2", "site-b")])
    await store.save_nodes([node(state="online", seen=42.0)])
    got = await store.get_node("node-1")
    assert got.state == "online"
    assert got.last_seen_unix == 42.0
    assert got.labels == {"rack": "1"}
    assert [n.node_id for n in await store.list_nodes()] == ["node-1", "node-2"]
    assert [n.node_id for n in await store.list_nodes("site-b")] == ["node-2"]
