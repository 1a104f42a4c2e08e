"""The agent's copy of the hub's revoked serials, on a real agent.db: replaced whole,
applied before it is written, kept across restarts, listeners told of new ones only."""

from pathlib import Path

from agent.pki.revocations import RevokedSerials
from agent.state_db import AgentStateDB


async def test_the_hubs_list_is_applied_persisted_and_reloaded(tmp_path: Path) -> None:
    db = AgentStateDB(tmp_path / "agent.db")
    await db.open()
    told: list[frozenset[str]] = []
    try:
        revoked = RevokedSerials(db)
        revoked.listeners.append(told.append)
        await revoked.load()
        assert len(revoked) == 0
        assert await revoked.replace(["AB12", " cd34 ", ""]) == {"ab12", "cd34"}
        assert "ab12" in revoked
        assert await revoked.replace(["ab12", "cd34"]) == frozenset()  # nothing new
        assert await revoked.replace(["cd34", "ef56"]) == {"ef56"}  # the list is replaced
        assert "ab12" not in revoked
        assert told == [frozenset({"ab12", "cd34"}), frozenset({"ef56"})]
    finally:
        await db.close()
    reopened = AgentStateDB(tmp_path / "agent.db")
    await reopened.open()
    try:
        after_restart = RevokedSerials(reopened)
        await after_restart.load()
        assert after_restart.serials == {"cd34", "ef56"}
    finally:
        await reopened.close()
