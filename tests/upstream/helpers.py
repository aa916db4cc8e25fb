"""Small async helpers and config builders of the upstream tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from edge_runtime.config import UpstreamConfig
from tests.upstream.broker import USERS, Mosquitto


async def wait_until(cond: Callable[[], Any], timeout_s: float = 10.0, what: str = "") -> None:
    """Poll ``cond`` on the loop (never blocking it) until true; fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or cond}")
        await asyncio.sleep(0.02)


def upstream_config(broker: Mosquitto | None = None, *, user: str = "node",
                    password: str | None = None, file: bool = False, tls: str = "",
                    home_assistant: bool = False, **outbox: Any) -> UpstreamConfig:
    """An [upstream] config for tests: fast reconnects, the MQTT sink on ``broker``."""
    data: dict[str, Any] = {"file": {"enabled": file}}
    if broker is not None:
        port = {"": broker.port, "tls": broker.tls_port, "mtls": broker.mtls_port}[tls]
        mqtt: dict[str, Any] = {
            "url": f"{'mqtts' if tls else 'mqtt'}://127.0.0.1:{port}", "username": user,
            "password": USERS.get(user, "") if password is None else password,
            "reconnect_min_s": 0.05, "reconnect_max_s": 0.3, "connect_timeout_s": 3.0,
            "home_assistant": {"enabled": home_assistant}}
        if tls:
            mqtt["ca_file"] = str(broker.pki["ca"])
        if tls == "mtls":
            mqtt["cert_file"] = str(broker.pki["client_cert"])
            mqtt["key_file"] = str(broker.pki["client_key"])
        data["mqtt"] = mqtt
    config = msgspec.convert(data, UpstreamConfig)
    # Outbox settings are set directly, not validated: the disk-cap tests use caps of a
    # few tens of KB (below what a config may say) so that they fill in seconds.
    return msgspec.structs.replace(config, outbox=msgspec.structs.replace(config.outbox,
                                                                          **outbox))


def state(tmp_path: Path) -> Path:
    return tmp_path / "state"
