"""Replication settings: the hub's timing rule and per-group min_sync checks."""

from pathlib import Path

import pytest

from edgecommon import config as loader
from edgecommon.errors import ConfigError
from hub.config import HubConfig


def load(tmp_path: Path, text: str) -> HubConfig:
    f = tmp_path / "hub.toml"
    f.write_text(text)
    return loader.load(HubConfig, f, {})


def test_a_lease_must_outlive_a_heartbeat_after_a_crash(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="surviving sync replica"):
        load(tmp_path, "[link]\nheartbeat_interval_s = 9\noffline_after_s = 20\n")
    assert load(tmp_path, "[link]\nheartbeat_interval_s = 7.5\noffline_after_s = 20\n")


def test_group_min_sync_must_be_small_whole_numbers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="whole numbers 0-16 per group"):
        load(tmp_path, '[replication]\ngroup_min_sync = { site-a = "two" }\n')
    cfg = load(tmp_path, '[replication]\ngroup_min_sync = { site-a = "2" }\n')
    assert cfg.replication.group_min_sync == {"site-a": "2"}
