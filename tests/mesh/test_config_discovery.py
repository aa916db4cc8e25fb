"""[mesh.discovery]: defaults, bounds with the key path, the cross-field check."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.config import Config, load_config
from edge_runtime.errors import ConfigError


def _load(tmp_path: Path, body: str) -> Config:
    path = tmp_path / "c.toml"
    path.write_text(body)
    return load_config(path)


def test_defaults_and_a_full_section(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "")
    disc = cfg.mesh.discovery
    assert (disc.enabled, disc.interfaces, disc.ip_version) == (False, [], "v4")
    with pytest.raises(ConfigError, match="discovery or offloading are set but no TLS"):
        _load(tmp_path, "[mesh.discovery]\nenabled = true\n")  # found by strangers
    cfg = _load(tmp_path, '[mesh]\ninsecure_plaintext = true\n'
                          '[mesh.discovery]\nenabled = true\ninterfaces = ["eth0"]\n'
                          'ip_version = "all"\nheartbeat_interval_s = 0.5\n'
                          'heartbeat_timeout_s = 0.4\ndown_after_misses = 2\n'
                          'remove_after_s = 30\n')
    disc = cfg.mesh.discovery
    assert (disc.interfaces, disc.ip_version, disc.down_after_misses) == (["eth0"], "all", 2)


@pytest.mark.parametrize(("body", "match"), [
    ("heartbeat_interval_s = 0.01", r"mesh.discovery.heartbeat_interval_s"),
    ("down_after_misses = 0", r"mesh.discovery.down_after_misses"),
    ('ip_version = "v5"', r"mesh.discovery.ip_version"),
    ("heartbeat_interval_s = 0.5\nheartbeat_timeout_s = 1.0",
     r"heartbeat_timeout_s: 1.0 s is longer than heartbeat_interval_s"),
    ("color = 1", r"color"),
])
def test_bad_values_name_the_key(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _load(tmp_path, f"[mesh.discovery]\n{body}\n")
