"""Typed errors of firmware_bridge, all rooted at :class:`BridgeError`.

``firmware_bridge`` is a standalone library: it does not know about edge-runtime,
which translates these errors at its boundary. As in edge-runtime, every message says
what is wrong and what to do, and leaves also subclass the matching builtin so that
callers that only know the builtins still catch them.

Families:

- :class:`FrameError`: one received frame could not be decoded. The stream decoder
  counts these and never lets them escape; :func:`~firmware_bridge.protocol.decode_frame`
  raises them for callers that decode single frames.
- :class:`LinkError`: the serial link (port missing, device gone, no answer).
- :class:`CommandError`: a command (SET_RATE, GPIO_WRITE) was not carried out.
- :class:`BackgroundTaskError`: a background task of the client failed with an error
  that is not a bridge error (a bug, an unexpected OS error); the client has stopped.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error raised on purpose by firmware_bridge."""

    #: One short sentence telling the user what to do; appended to the message.
    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        if hint is not None:
            self.hint = hint
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class BridgeConfigError(BridgeError, ValueError):
    """An argument given to the library cannot be used (the message names it)."""

    hint = "fix the argument"


# --- frames -----------------------------------------------------------------------------


class FrameError(BridgeError, ValueError):
    """Base of every error about one received frame."""

    hint = "the frame is dropped; the decoder resynchronises on the next delimiter"


class CobsError(FrameError):
    """The bytes between two delimiters are not valid COBS."""


class CrcError(FrameError):
    """The frame's CRC-16 does not match its content (corrupted on the wire)."""


class FrameTooLongError(FrameError):
    """More bytes than the longest legal frame arrived without a delimiter."""


class UnsupportedVersionError(FrameError):
    """The frame's version byte is not one this library speaks."""

    hint = "update the firmware or firmware_bridge so that both speak the same protocol version"


class UnknownMessageError(FrameError):
    """The frame's message type is not defined by the protocol."""


class MalformedPayloadError(FrameError):
    """The payload is too short, too long or inconsistent for its message type."""


# --- link -----------------------------------------------------------------------------


class LinkError(BridgeError, ConnectionError):
    """Base of every error about the serial link to the device."""


class PortNotFoundError(LinkError, FileNotFoundError):
    """The configured tty path does not exist, or no port matches the USB id."""

    hint = "check the cable and the path (ls /dev/serial/by-id) or the USB id (lsusb)"


class PortOpenError(LinkError):
    """The tty exists but cannot be opened or configured."""

    hint = "check permissions (dialout group) and that no other program holds the port"


class DeviceDisconnectedError(LinkError):
    """The device went away (unplugged, reset) or is not connected right now."""

    hint = "wait for the bridge to reconnect, or check the cable"


class HelloTimeoutError(LinkError, TimeoutError):
    """The port opened but no HELLO came back within the timeout."""

    hint = "check that the device runs the edge bridge firmware and the baud rate matches"


# --- commands --------------------------------------------------------------------------


class CommandError(BridgeError):
    """Base of every error about a command sent to the device."""


class UnknownChannelError(CommandError, KeyError):
    """The channel id or name is not in the device's HELLO."""

    hint = "use a channel id or name from the device's HELLO (BridgeClient.hello)"

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return BridgeError.__str__(self)


class CommandTimeoutError(CommandError, TimeoutError):
    """The device did not ACK or NACK a command, even after retries."""

    hint = "the link may be overloaded or the device stalled; retry later"


class CommandRejectedError(CommandError, RuntimeError):
    """The device answered NACK; :attr:`reason` says why."""

    hint = "check the value against the limits in the device's HELLO"

    def __init__(self, message: str, *, reason: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        #: The NACK reason code (:class:`~firmware_bridge.protocol.NackReason` value).
        self.reason = reason


# --- client --------------------------------------------------------------------------


class BackgroundTaskError(BridgeError, RuntimeError):
    """A background task of a client failed with an unexpected error; the client stopped.

    The original error is the ``__cause__``; :attr:`task` names the task that failed.
    """

    hint = "the client has stopped; the cause's traceback says why (report it), then reconnect"

    def __init__(self, message: str, *, task: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        #: Name of the task that failed (``firmware_bridge.supervisor``, ...).
        self.task = task
