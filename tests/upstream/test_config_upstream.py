"""[upstream] config: malformed broker URLs and topics are refused with the key path."""

from __future__ import annotations

import pytest

from edge_runtime.config import decode_config
from edge_runtime.errors import ConfigError


@pytest.mark.parametrize(("text", "message"), [
    ('[upstream.mqtt]\nurl = "http://broker"\n',
     "upstream.mqtt.url: 'http://broker': the scheme must be mqtt:// or mqtts://"),
    ('[upstream.mqtt]\nurl = "mqtt://broker:99999"\n', "upstream.mqtt.url: "),
    ('[upstream.mqtt]\nurl = "mqtt://"\n', "upstream.mqtt.url: 'mqtt://' has no host"),
    ('[upstream.mqtt]\nurl = "mqtt://u:p@broker"\n', "put credentials in username"),
    ('[upstream.mqtt]\nurl = "mqtt://b"\ntopic_prefix = "edge/#"\n',
     "upstream.mqtt.topic_prefix: topic prefix 'edge/#' must not contain the wildcards"),
    ('[upstream.mqtt]\nurl = "mqtt://b"\ntopic_prefix = "/edge"\n',
     "upstream.mqtt.topic_prefix:"),
    ('[node]\nname = "a/b"\n[upstream.mqtt]\nurl = "mqtt://b"\n', "node.name: node name"),
    ('[upstream.mqtt]\nurl = "mqtt://b"\nca_file = "nope.pem"\n', "upstream.mqtt.ca_file: no file"),
    ('[upstream.mqtt]\nurl = "mqtt://b"\nqos = 2\n', "upstream.mqtt.qos: unknown key"),
    ('[upstream.mqtt]\nurl = "mqtt://b"\n[upstream.mqtt.home_assistant]\nprefix = "ha/+"\n',
     "upstream.mqtt.home_assistant.prefix:"),
    ('[upstream.http]\nurl = "ftp://x"\n', "upstream.http.url:"),
    ('[upstream.outbox]\nmax_bytes = 0\n', "upstream.outbox.max_bytes: must be >= 1048576"),
    ('[upstream.outbox]\nmax_bytes = 10\n', "below 1 MiB the cap's own loss reports fill it"),
    ("[upstream]\nsummary_interval_s = 0\n", "upstream.summary_interval_s: must be > 0"),
])
def test_upstream_errors_name_the_key_path(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        decode_config(text)
    assert message in str(info.value)
    assert "; " in str(info.value)


def test_defaults_need_no_server() -> None:
    cfg = decode_config("").upstream
    assert cfg.enabled and cfg.file.enabled and cfg.mqtt is None and cfg.http is None
    assert cfg.summary_interval_s == 60.0 and cfg.outbox.commit_interval_s == 0.1
