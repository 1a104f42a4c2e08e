"""The hub writing its audit log to the real PostgreSQL server, and edgectl reading it
directly (--pg-url); an unreachable database sends events to the file log, none lost."""

import asyncio
import os
import secrets
from collections.abc import Iterator

import asyncpg
import pytest

from tests.procs import Fleet, clean_env, free_port

PG_URL = os.environ.get("AUTONOMY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
OK, FAILED, PARTIAL = 0, 1, 5


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh database on the test server (the hub uses its public schema)."""
    name = f"hub_audit_{secrets.token_hex(5)}"
    try:
        asyncio.run(_admin(f"CREATE DATABASE {name}"))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("AUTONOMY_TEST_PG_URL") or os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_URL} does not answer: {exc}")
        pytest.skip(f"no PostgreSQL at {PG_URL} ({exc}); set AUTONOMY_TEST_PG_URL")
    base, _, _ = PG_URL.rpartition("/")
    yield f"{base}/{name}"
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def _sql(url: str, sql: str, *, replica: bool = False) -> object:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        if replica:  # a superuser switching the append-only triggers off, as an intruder would
            await conn.execute("SET session_replication_role = replica")
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def test_inv_audit_01_hub_audits_to_postgresql_and_edgectl_reads_it_directly(
    fleet: Fleet, pg_database: str
) -> None:
    fleet.start_hub(env={"AUTONOMY_AUDIT_PG_URL": pg_database})
    fleet.bootstrap_operator()
    engaged = fleet.edgectl("estop", "engage", "--scope", "fleet", "--reason", "pg trail")
    assert engaged.code == OK, engaged.stderr
    via_hub = fleet.edgectl("-o", "json", "audit", "query", "--action", "estop.engage")
    assert via_hub.code == OK, via_hub.stderr
    assert via_hub.json["backend"].startswith("postgresql://")
    assert [e["outcome"] for e in via_hub.json["events"]] == ["attempt", "success"]
    direct = fleet.edgectl(
        "-o", "json", "audit", "query", "--pg-url", pg_database, "--action", "estop.engage"
    )
    assert direct.code == OK, direct.stderr
    assert direct.json["events"] == via_hub.json["events"]
    by_env = fleet.edgectl(
        "-o", "json", "audit", "verify", env=clean_env(AUTONOMY_AUDIT_PG_URL=pg_database)
    )
    assert by_env.code == OK, by_env.stderr
    assert by_env.json["ok"]

    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        asyncio.run(_sql(pg_database, "UPDATE audit_events SET reason = 'nothing' WHERE seq = 1"))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        asyncio.run(_sql(pg_database, "DELETE FROM audit_events WHERE seq = 1"))

    seq = via_hub.json["events"][0]["seq"]
    asyncio.run(
        _sql(
            pg_database,
            f"UPDATE audit_events SET reason = 'routine' WHERE seq = {seq}",
            replica=True,
        )
    )
    tampered = fleet.edgectl("audit", "verify", "--pg-url", pg_database)
    assert tampered.code == FAILED
    assert f"event {seq}" in tampered.stdout
    assert "edited" in tampered.stdout


def test_unreachable_postgresql_falls_back_to_the_file_log(fleet: Fleet) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    fleet.start_hub(env={"AUTONOMY_AUDIT_PG_URL": dead})
    fleet.bootstrap_operator()
    assert "writing audit events to file:" in fleet.hub.output()
    engaged = fleet.edgectl("estop", "engage", "--scope", "fleet", "--reason", "db down")
    assert engaged.code == OK, engaged.stderr
    status = fleet.edgectl("-o", "json", "audit", "status")
    assert status.code == PARTIAL
    assert status.json["fallbacks"] >= 2
    assert "127.0.0.1" in status.json["last_error"]
    unreachable = fleet.edgectl("audit", "query", "--pg-url", dead)
    assert unreachable.code == 3
    assert len(unreachable.stderr.strip().splitlines()) == 1
    segments = sorted((fleet.hub_state / "audit").glob("*.jsonl"))
    text = "".join(p.read_text() for p in segments)
    assert '"reason":"db down"' in text


def test_direct_export_and_prune_pass_edgectls_flags_through_to_edge_hub(
    fleet: Fleet, pg_database: str
) -> None:
    fleet.start_hub(env={"AUTONOMY_AUDIT_PG_URL": pg_database})
    fleet.bootstrap_operator()
    engaged = fleet.edgectl("estop", "engage", "--scope", "fleet", "--reason", "export, me")
    assert engaged.code == OK, engaged.stderr
    for fmt in ("jsonl", "csv"):
        words = ("audit", "export", "--format", fmt, "--action", "estop.engage")
        via_hub = fleet.edgectl(*words)
        direct = fleet.edgectl(*words, "--pg-url", pg_database)
        assert via_hub.code == direct.code == OK, direct.stderr
        assert direct.stdout == via_hub.stdout
        assert len(direct.stdout.splitlines()) == (3 if fmt == "csv" else 2)
    to_file = fleet.edgectl("audit", "export", "--file", "trail.jsonl", "--pg-url", pg_database)
    assert to_file.code == OK, to_file.stderr
    assert "written to trail.jsonl" in to_file.stderr
    assert '"reason":"export, me"' in (fleet.root / "trail.jsonl").read_text()

    unconfirmed = fleet.edgectl("audit", "prune", "--older-than", "1d", "--pg-url", pg_database)
    assert unconfirmed.code == 2
    assert "--force" in unconfirmed.stderr
    pruned = fleet.edgectl(
        "-o",
        "json",
        "audit",
        "prune",
        "--older-than",
        "1d",
        "--reason=-yearly",
        "--force",
        "--pg-url",
        pg_database,
        env=clean_env(AUTONOMY_OPERATOR="carol"),
    )
    assert pruned.code == OK, pruned.stderr
    assert pruned.json["removed"] == 0
    assert pruned.json["backend"].startswith("postgresql://")
    recorded = fleet.edgectl("-o", "json", "audit", "query", "--action", "audit.prune")
    [event] = recorded.json["events"]
    assert (event["seq"], event["operator"]) == (pruned.json["event_seq"], "carol")
    assert event["reason"] == "-yearly"
    assert "direct database access" in event["detail"]
