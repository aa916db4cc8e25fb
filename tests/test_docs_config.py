"""The full example in docs/config.md is a valid config."""

from __future__ import annotations

import re
from pathlib import Path

from edge_runtime.config import decode_config

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def test_full_example_validates(tmp_path: Path) -> None:
    text = DOC.read_text()
    example = re.search(r"## Full example.*?```toml\n(.*?)```", text, re.S)
    assert example is not None
    (tmp_path / "machine_temperature.csv").write_text("timestamp,value\n0,1\n1,2\n")
    config = decode_config(example[1], base_dir=tmp_path)
    assert [p.id for p in config.pipelines] == ["door", "hall", "light", "machine"]
    assert config.health.rules[0].field == "temperature_c"
