"""The layered config loader: defaults, file, environment; every problem reported."""

from pathlib import Path

import pytest

from agent.config import AgentConfig
from edgecommon.config import describe, load
from edgecommon.errors import ConfigError
from hub.config import HubConfig


def test_defaults_are_valid() -> None:
    assert load(HubConfig, None, {}).link.heartbeat_interval_s == 1.0
    assert load(AgentConfig, None, {}).agent.socket == Path("/run/edge-agent/agent.sock")


def test_file_then_environment(tmp_path: Path) -> None:
    f = tmp_path / "hub.toml"
    f.write_text('[hub]\nlisten = "127.0.0.1:9000"\n[link]\nheartbeat_interval_s = 2\n')
    config = load(HubConfig, f, {"AUTONOMY_LINK_HEARTBEAT_INTERVAL_S": "0.5"})
    assert config.hub.listen == "127.0.0.1:9000"
    assert config.link.heartbeat_interval_s == 0.5
    assert config.link.offline_after_s == 5.0


def test_list_and_table_overrides_from_environment() -> None:
    config = load(AgentConfig, None, {"AUTONOMY_AGENT_LABELS": "site=a, rack=3"})
    assert config.agent.labels == {"site": "a", "rack": "3"}
    hub = load(HubConfig, None, {"AUTONOMY_HUB_SERVER_NAMES": "hub.example, 10.0.0.1"})
    assert hub.hub.server_names == ["hub.example", "10.0.0.1"]


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    f = tmp_path / "hub.toml"
    f.write_text('[hub]\nlisten = 5\nbogus = 1\n[store]\nbackend = "mysql"\n')
    with pytest.raises(ConfigError) as err:
        load(HubConfig, f, {"AUTONOMY_LINK_OFFLINE_AFTER_S": "never"})
    problems = err.value.problems
    assert len(problems) == 4
    assert any("unknown key [hub].bogus" in p for p in problems)
    assert any("[store].backend: expected one of 'sqlite'" in p for p in problems)
    assert any("AUTONOMY_LINK_OFFLINE_AFTER_S" in p for p in problems)
    assert all(str(f) in p for p in problems if "AUTONOMY_" not in p)


def test_booleans_are_not_numbers(tmp_path: Path) -> None:
    f = tmp_path / "hub.toml"
    f.write_text("[link]\nheartbeat_interval_s = true\n")
    with pytest.raises(ConfigError, match="expected a number, got True"):
        load(HubConfig, f, {})


def test_every_key_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for config in (HubConfig, AgentConfig):
        for key, _, _, doc in describe(config):
            assert doc, f"{key} has no documentation"
            assert f"`{key}`" in docs, f"{key} is missing from docs/configuration.md"
