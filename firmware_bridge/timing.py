"""Every timing constant of the bridge in one place, so tests can shorten them.

All values are seconds. Pass a modified copy to :class:`~firmware_bridge.client.BridgeClient`
(``dataclasses.replace(DEFAULT_TIMING, hello_timeout_s=0.5)``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timing:
    """Timeouts, intervals and backoff of the bridge client (seconds)."""

    #: How long one connection attempt waits for HELLO after opening the port.
    hello_timeout_s: float = 2.0
    #: GET_HELLO is re-sent at this interval while waiting for HELLO.
    hello_retry_s: float = 0.25
    #: How long ``BridgeClient.__aenter__`` keeps trying before it gives up.
    connect_timeout_s: float = 5.0
    #: Wait for one ACK/NACK before re-sending the command.
    command_timeout_s: float = 0.5
    #: Re-sends of a command after the first try (commands are idempotent).
    command_retries: int = 2
    #: Host HEARTBEAT interval.
    heartbeat_interval_s: float = 1.0
    #: No frame at all for this long means the device is gone (it sends HEARTBEAT
    #: every second); the port is closed and reopened.
    liveness_timeout_s: float = 3.0
    #: Reconnect backoff: first delay, cap, and +- jitter fraction.
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    backoff_jitter: float = 0.2


DEFAULT_TIMING = Timing()
