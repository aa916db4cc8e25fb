"""Typed errors of edge-runtime, all rooted at :class:`EdgeRuntimeError`.

Every error carries a message that says what is wrong *and* what to do about it,
so the CLI can print it as one line and exit with code 2. Leaves also subclass the
matching builtin (``FileNotFoundError``, ``ValueError``, ...) so callers that only
know the builtins still catch them.

Families:

- :class:`ModelError`: loading or running a model (not found, corrupt, unsupported,
  bad input, integrity).
- :class:`ConfigError`: a configuration file or value that is not acceptable.
- :class:`CliUsageError`: a command-line argument that cannot be used.
- :class:`UpstreamError`: reporting upstream (outbox, MQTT, HTTP, file sinks, snapshots).
- :class:`UpdateError`: ``edge-runtime update`` (signature, replay, self-test, health).
- :class:`WebError`: the node's web page (`[web]`: unsafe listen address, token file, bind).

Later subsystems (sources, bridge, mesh, upstream) add their own family bases here.
"""

from __future__ import annotations


class EdgeRuntimeError(Exception):
    """Root of every error raised on purpose by edge-runtime."""

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


# --- models -------------------------------------------------------------------------


class ModelError(EdgeRuntimeError):
    """Base of every error about loading or running a model."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """The model file or shipped model name does not exist."""

    hint = "check the path, or run 'edge-runtime models list' for the shipped models"


class UnknownModelFormatError(ModelError, ValueError):
    """The file is neither ONNX nor TFLite (judged by its suffix and content)."""

    hint = "give a .onnx or .tflite file"


class CorruptModelError(ModelError, ValueError):
    """The file is truncated, damaged or not a valid model of its format."""

    hint = "re-copy or re-export the model file"


class ModelCrashError(CorruptModelError):
    """The backend crashed (killed by a signal) while probing the file in a child process."""

    hint = "the file is malformed or triggers a backend bug; re-export it or try the other format"


class UnsupportedModelError(ModelError, ValueError):
    """A valid model that the installed backend cannot run (operator, type, opset)."""

    hint = "re-export the model with operators the backend supports, or upgrade the backend"


class BackendUnavailableError(ModelError, ImportError):
    """No installed package can run this model format."""

    hint = "install ai-edge-litert (or tflite-runtime) for .tflite and onnxruntime for .onnx"


class IntegrityError(ModelError, ValueError):
    """A model file does not match the sha256 in its manifest.

    ``load_model`` gives each case its own hint: a shipped model says reinstall, a
    user's manifest names the manifest and the sha256 to put in it.
    """

    hint = ("copy the model file again, or if you changed it on purpose, put its new sha256 "
            "in the manifest")


class ManifestError(ModelError, ValueError):
    """A model manifest (TOML) is missing a field or has a wrong one."""

    hint = "fix the manifest; see docs/models.md for its fields"


class InputError(ModelError, ValueError):
    """Input given to :meth:`Model.run` does not fit the model (name, shape or dtype)."""

    hint = ("check the model's inputs (names, shapes, dtypes): model.inputs, or "
            "'edge-runtime models info' with the model's name or path")


class InferenceError(ModelError, RuntimeError):
    """The backend failed while running an otherwise valid input."""

    hint = "check the input values; if it persists, the model may be broken"


class ManifestMismatchError(ManifestError):
    """A manifest's postprocessing does not fit the model's outputs (names, ranks, sizes)."""

    hint = ("compare the manifest with the model's outputs ('edge-runtime models info' with "
            "the model's name or path); docs/models.md lists each decoder's outputs")


class PluginError(ManifestError, ImportError):
    """A plugin decoder (``postprocessing = "package.module:function"``) cannot be used."""

    hint = ("the function must be importable from the daemon's Python and take "
            "(outputs, context); see 'Your own decoder' in docs/models.md")


class WarmUpError(InferenceError):
    """The model fails on its warm-up input (zeros at the shapes given or assumed)."""

    hint = "give the shapes the model takes, e.g. --shape input=1x3x640x640, or an .npz input"


# --- configuration and CLI -------------------------------------------------------------


class ConfigError(EdgeRuntimeError, ValueError):
    """A configuration value is missing or wrong; the message names the key path."""

    hint = "fix the configuration; see docs/config.md"


class CliUsageError(EdgeRuntimeError, ValueError):
    """A command-line argument that cannot be used (bad input file, bad number list...)."""

    #: The CLI replaces this with the command's own ``--help`` when it prints the error.
    hint = "run the command with --help for its arguments"


# --- data -------------------------------------------------------------------------------


class DataError(EdgeRuntimeError, ValueError):
    """Input data that cannot be used (bad CSV row, unparsable time, time going backwards).

    The message names the file and the line number of the first offending row.
    """

    hint = "fix or remove that row; timestamps must be ISO 8601 and in time order"


class FileWriteError(EdgeRuntimeError, OSError):
    """An output file could not be written (the message names the path and why)."""

    hint = "check the path, that its folder exists and is writable, and the free space"


# --- sources, pipelines and the daemon ---------------------------------------------------


class SourceError(EdgeRuntimeError):
    """Base of every error about a camera, sensor or recording source."""


class SourceUnavailableError(SourceError, ConnectionError):
    """A source cannot be opened or read right now (device missing, stream down)."""

    hint = "check the device index, URL or wiring; the daemon retries with backoff"


class RecordingError(SourceError, ValueError):
    """A recording file (CSV, NPY, video) cannot be read or has the wrong columns."""

    hint = "give a CSV with timestamp,value columns, an .npy of shape (n, 2), or a video file"


class ActionError(EdgeRuntimeError, RuntimeError):
    """An action (GPIO output, event log) failed to set up or to run."""

    hint = "check the pin number and the pin factory, or the event log folder's permissions"


class DaemonError(EdgeRuntimeError, RuntimeError):
    """The running daemon could not be reached or refused a request."""

    hint = ("start it ('systemctl start edge-runtime', or 'edge-runtime run' with the config "
            "file), or give --socket with its control socket")


# --- firmware bridge (microcontrollers on USB serial / UART) ----------------------------
# firmware_bridge is a standalone library with its own BridgeError root;
# edge_runtime.sources.bridge translates its errors into these at the boundary.


class BridgeUnavailableError(SourceUnavailableError):
    """A microcontroller behind the firmware bridge cannot be reached right now."""

    hint = (
        "check the cable, the port (ls /dev/serial/by-id) or USB id (lsusb), and that the "
        "device runs the edge bridge firmware"
    )


class BridgePortNotFoundError(BridgeUnavailableError, FileNotFoundError):
    """The serial port path does not exist, or no USB device matches the id."""


class BridgeTimeoutError(BridgeUnavailableError, TimeoutError):
    """The port opened but the device sent no HELLO, or did not answer a command."""

    hint = "check that the device runs the edge bridge firmware and the baud rate matches"


class BridgeCommandError(SourceError, RuntimeError):
    """The device refused a command (rate above its maximum, unknown channel or pin)."""

    hint = "check the value against what 'edge-runtime bridge probe' reports for the port"


# --- upstream reporting (outbox and sinks) -----------------------------------------------


class UpstreamError(EdgeRuntimeError):
    """Base of every error about reporting upstream (the outbox, MQTT, HTTP, file sinks)."""


class OutboxError(UpstreamError, OSError):
    """The SQLite outbox cannot be opened or written (folder missing, disk full, read-only)."""

    hint = "check that upstream.outbox.path is on a writable, not full file system"


class OutboxClosedError(UpstreamError, RuntimeError):
    """A message was published after :meth:`Upstream.close` (or before ``start``)."""

    hint = "publish between 'await upstream.start()' and 'await upstream.close()'"


class SinkError(UpstreamError, ConnectionError):
    """A sink cannot deliver right now (broker or server unreachable, TLS failure)."""

    hint = "check the URL, the network and the certificates; delivery is retried with backoff"


class SinkAuthError(SinkError, PermissionError):
    """The broker or server refused our credentials or refused a topic (not authorized)."""

    hint = "check upstream.mqtt username/password (or the broker's ACL for this node's topics)"


class SinkRefusedError(SinkError):
    """The sink refused one message (MQTT PUBACK failure reason code, HTTP non-2xx)."""

    hint = "see the sink's last error in 'edge-runtime status'; the message stays in the outbox"


class SnapshotError(UpstreamError, OSError):
    """A snapshot could not be encoded or written to the snapshot folder."""

    hint = "check upstream.snapshots.path is writable and the frame is an image array"


# --- updates (edge-runtime update) -----------------------------------------------------


class UpdateError(EdgeRuntimeError):
    """Base of every error about a model or config update; the installed one stays."""


class SignatureError(UpdateError, ValueError):
    """A signature, key file or trusted comment that does not verify or cannot be read."""

    hint = "sign the file with the fleet's key (minisign -S, or 'edge-runtime update --sign')"


class ReplayError(UpdateError, ValueError):
    """An artefact whose signed version is not newer than the installed one."""

    hint = "sign the new artefact with a higher version (trusted comment 'version=N')"


class SelfTestError(UpdateError, ValueError):
    """The new artefact did not load or run (a model) or validate (a config)."""

    hint = "fix the artefact; the installed version keeps running"


class HealthCheckError(UpdateError, RuntimeError):
    """The daemon did not come up with the new artefact in time; it was rolled back."""

    hint = "see 'journalctl -u edge-runtime' for why; the previous version is back"


# --- mesh (peers over the Open Inference Protocol; fleet mutual TLS) ---------------------


class MeshError(EdgeRuntimeError):
    """Base of every error about a peer: reaching it, its answers, the fleet's TLS."""


class PeerUnavailableError(MeshError, ConnectionError):
    """The peer cannot be reached (refused, reset, unknown name)."""

    hint = "check that 'edge-runtime serve' runs on the peer and its [mesh] listen address"


class PeerTlsError(PeerUnavailableError):
    """The TLS handshake failed: a certificate from another CA, expired, revoked or absent."""

    hint = ("give both nodes certificates from the same fleet CA ('edge-runtime fleet enroll') "
            "and its current crl.pem")


class PeerTimeoutError(MeshError, TimeoutError):
    """The peer did not answer within the request's deadline."""

    hint = "raise the timeout, or offload to a less busy peer"


class PeerBusyError(MeshError, ConnectionError):
    """The peer's queue for this node is full (HTTP 429); try again after ``retry_after_s``."""

    hint = "retry after the delay the peer gave, or run the model locally"

    def __init__(self, message: str, *, retry_after_s: float, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


class PeerProtocolError(MeshError, ValueError):
    """A request or answer that breaks the Open Inference Protocol (bad JSON, sizes)."""

    hint = "check both sides speak KServe v2 (docs/mesh.md)"


class PeerRequestError(MeshError, RuntimeError):
    """The peer refused the request (an HTTP error status other than busy or timeout)."""

    hint = "see the peer's message; 'edge-runtime models list' on the peer shows its models"

    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class FleetError(MeshError, ValueError):
    """A fleet CA operation that cannot be done (missing CA, bad CSR, unknown node)."""

    hint = "see 'edge-runtime fleet --help'; docs/mesh.md walks through the fleet CA"


# --- mesh: discovery and scheduling (mesh/discovery.py, mesh/scheduler.py) ---------------


class DiscoveryError(MeshError):
    """mDNS discovery cannot start or advertise this node."""

    hint = "see docs/mesh.md, 'Discovery and scheduling'"


class DiscoveryInterfaceError(DiscoveryError, OSError):
    """No usable network interface (none named exists, or none carries the default route)."""

    hint = ("name the interfaces in [mesh.discovery] interfaces (see 'ip -brief addr'), "
            "or give the node a default route")


class TxtRecordTooLargeError(DiscoveryError, ValueError):
    """The advertised TXT record is over its size limit."""

    hint = "shorten the node id or advertise fewer fields"


class SchedulerError(MeshError, ValueError):
    """The scheduler was given settings or calls it cannot use."""

    hint = "see the model in edge_runtime/mesh/scheduler.py's docstring"


# --- the node's web page ([web]; docs/web.md) ---------------------------------------------


class WebError(EdgeRuntimeError):
    """Base of every error about the node's web server."""


class WebConfigError(WebError, ValueError):
    """``[web]`` asks for something unsafe or impossible (a LAN address without HTTPS)."""

    hint = "see docs/web.md for [web] listen, tls_cert and tls_key"


class WebStartError(WebError, OSError):
    """The web server could not listen (address in use, a certificate that does not load)."""

    hint = "pick another [web] listen port, or stop what holds it"


class WebTokenError(WebError, OSError):
    """The token file cannot be read or written."""

    hint = "check that the state folder is writable by the daemon's user"
