"""Issue #13, end to end: daemons (``edge-runtime run``) in network namespaces, each
under a CPU quota (a Pi-class node), no peer address configured anywhere. They find
each other by mDNS, share the heavy model's load over mutual TLS, refuse a node of
another fleet, catch a fleet member that answers wrongly, and lose no result when a
peer is SIGKILLed mid-stream (tests/mesh/netns.py builds the hosts)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edge_runtime import control
from edge_runtime.errors import DaemonError
from edge_runtime.mesh import fleet as fl
from tests.helpers.events import read_events
from tests.helpers.media import make_video
from tests.mesh.heavy import write_heavy
from tests.mesh.netns import Host, Net, Process
from tests.mesh.oip_helpers import node as enroll

ROOT = Path(__file__).resolve().parents[2]
#: Share of one core per node: a Pi-class CPU.
QUOTA = 0.25
#: Heavy enough that one quota'd node cannot keep up with the camera.
CONVS = 16
CAMERA_HZ = 15
HEARTBEAT_S = 0.5
MISSES = 3
#: Start of a daemon under its quota on a busy 2-core machine (imports, model load).
START_S = 40.0


def _config(folder: Path, tls: fl.TlsFiles, heavy: Path, clip: Path, *, name: str,
            camera: bool, verify_fraction: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pipeline = f"""
[[sources]]
type = "camera"
id = "cam"
path = "{clip}"
loop = true
min_rate_hz = {CAMERA_HZ}
max_rate_hz = {CAMERA_HZ}

[[pipelines]]
id = "watch"
source = "cam"
model = "{heavy}"
offload = true
inflight = 3
[pipelines.sampling]
policy = "fixed"
""" if camera else ""
    cfg = folder / "node.toml"
    cfg.write_text(f"""
[node]
name = "{name}"
state_dir = "state"

[budget]
enabled = false
{pipeline}
[mesh]
listen = "0.0.0.0:8001"
models = ["{heavy}"]
tls_cert = "{tls.cert}"
tls_key = "{tls.key}"
tls_ca = "{tls.ca}"
tls_crl = "{tls.crl}"
verify_fraction = {verify_fraction}

[mesh.discovery]
enabled = true
interfaces = ["eth0"]
heartbeat_interval_s = {HEARTBEAT_S}
heartbeat_timeout_s = {HEARTBEAT_S * 0.8}
down_after_misses = {MISSES}
""")
    return cfg


def _start(host: Host, cfg: Path, *, quota: float | None = QUOTA) -> Process:
    return host.popen([sys.executable, "-m", "edge_runtime", "-v", "run", str(cfg)],
                      cpu_quota=quota, env={"PYTHONUNBUFFERED": "1"})


def _status(cfg: Path) -> dict[str, Any] | None:
    try:
        return control.request(cfg.parent / "state" / "control.sock", timeout_s=2.0)
    except DaemonError:
        return None


def _until(what: str, fn: Callable[[], Any], timeout_s: float, *,
           procs: tuple[Process, ...] = ()) -> Any:
    """Poll ``fn`` until it returns something true; fail with ``what`` after ``timeout_s``
    (or at once when one of ``procs`` died)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        for p in procs:
            if p.popen.poll() is not None:
                raise AssertionError(f"{what}: {p.cmd} exited {p.popen.returncode}: "
                                     f"{p.stderr_tail()}")
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s} s (last: {last!r})")


@contextlib.contextmanager
def _with_log(proc: Process) -> Iterator[None]:
    """A failed assertion inside also shows ``proc``'s log (its stderr; stops it)."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- {proc.host.name} log:\n{proc.stderr_tail()}") from exc


def _rate(cfg: Path, window_s: float) -> float:
    """The pipeline's inferences per second over ``window_s``."""
    first = _status(cfg)
    assert first is not None
    t0, n0 = time.monotonic(), first["pipelines"]["watch"]["inferences"]
    time.sleep(window_s)
    last = _status(cfg)
    assert last is not None
    return (last["pipelines"]["watch"]["inferences"] - n0) / (time.monotonic() - t0)


def _mesh(status: dict[str, Any] | None) -> dict[str, Any]:
    assert status is not None and status.get("mesh") is not None, status
    mesh: dict[str, Any] = status["mesh"]
    return mesh


def _books(status: dict[str, Any], peer: str) -> int:
    """Requests this node sent to ``peer`` (its books)."""
    row = _mesh(status)["peers"].get(peer) or {}
    return int((row.get("books") or {}).get("consumed_requests", 0))


def _peer_row(cfg: Path, peer: str) -> dict[str, Any] | None:
    """``peer``'s row in the node's mesh status (None before the daemon answers)."""
    status = _status(cfg)
    if status is None or status.get("mesh") is None:
        return None
    row: dict[str, Any] | None = status["mesh"]["peers"].get(peer)
    return row


def _no_result_lost(status: dict[str, Any]) -> None:
    """Every frame that entered the model got its one result, or is still running: the
    pipeline counts a result after the offloader delivered it, so the two differ by the
    frames in flight at the instant of the snapshot (at most ``inflight``)."""
    pipe = status["pipelines"]["watch"]
    heavy = _mesh(status)["models"]["heavy-test"]
    delivered = heavy["local"] + heavy["offloaded"]
    assert pipe["errors"] == 0 and heavy["failed"] == 0, (
        {k: pipe[k] for k in ("inferences", "errors", "last_error")}, heavy)
    assert 0 <= heavy["requests"] - delivered <= 3, heavy
    assert 0 <= delivered - pipe["inferences"] <= 3, (pipe, heavy)


def _setup(tmp_path: Path, names: list[str], *, camera: str = "a",
           verify_fraction: float = 0.0) -> tuple[fl.Fleet, Path, dict[str, Path]]:
    fleet = fl.init_fleet(tmp_path / "fleet")
    heavy = write_heavy(tmp_path / "heavy", convs=CONVS)
    clip = make_video(tmp_path / "clip.avi", 60, fps=30.0)
    cfgs = {}
    for name in names:
        tls = enroll(fleet, tmp_path / "fleet", name, hosts=[name]).files
        cfgs[name] = _config(tmp_path / name, tls, heavy, clip, name=name,
                             camera=name == camera, verify_fraction=verify_fraction)
    return fleet, heavy, cfgs


def test_three_nodes_share_the_heavy_model_refuse_an_outsider_and_survive_a_kill(
        tmp_path: Path, make_net: Callable[[int], Net]) -> None:
    _fleet, heavy, cfgs = _setup(tmp_path, ["a", "b", "c"], verify_fraction=0.05)
    # The outsider: configured like b and c, but enrolled in another fleet.
    other = fl.init_fleet(tmp_path / "other-fleet")
    d_tls = enroll(other, tmp_path / "other-fleet", "d", hosts=["d"]).files
    cfgs["d"] = _config(tmp_path / "d", d_tls, heavy, tmp_path / "clip.avi", name="d",
                        camera=False)
    net = make_net(4)
    hosts = dict(zip("abcd", net.hosts, strict=True))
    a = _start(hosts["a"], cfgs["a"])
    d = _start(hosts["d"], cfgs["d"])
    _until("a infers", lambda: (_status(cfgs["a"]) or {}).get("pipelines", {})
           .get("watch", {}).get("inferences", 0) > 3, START_S, procs=(a, d))

    # a alone (d is there, advertising, but no fleet member): it cannot keep up.
    alone_hz = _rate(cfgs["a"], 4.0)
    assert alone_hz < 0.6 * CAMERA_HZ, f"a alone does {alone_hz:.1f}/s: not a Pi-class node"

    b, c = _start(hosts["b"], cfgs["b"]), _start(hosts["c"], cfgs["c"])
    procs = (a, b, c, d)

    def both_take_work() -> bool:
        mesh = _mesh(_status(cfgs["a"]))
        peers = mesh["peers"]
        return all(peers.get(p, {}).get("state") == "up"
                   and "heavy-test" in peers[p].get("models", ())
                   and p in mesh["models"]["heavy-test"]["peers"] for p in ("b", "c"))

    _until("a uses b and c for heavy-test", both_take_work, START_S, procs=procs)
    shared_hz = _rate(cfgs["a"], 5.0)
    st = _status(cfgs["a"])
    assert st is not None
    print(f"a alone {alone_hz:.2f}/s, with b and c {shared_hz:.2f}/s "
          f"({shared_hz / alone_hz:.2f}x), quota {QUOTA} core each, convs {CONVS}, "
          f"camera {CAMERA_HZ} Hz")
    assert shared_hz >= 1.4 * alone_hz, (alone_hz, shared_hz, _mesh(st)["models"])
    assert _books(st, "b") > 0 and _books(st, "c") > 0, _mesh(st)["peers"]
    heavy_stats = _mesh(st)["models"]["heavy-test"]
    assert heavy_stats["offloaded"] > 0 and heavy_stats["disagreements"] == 0, heavy_stats
    _no_result_lost(st)

    # The outsider: seen by mDNS, refused by TLS both ways, never given work.
    def outsider_refused() -> dict[str, Any] | None:
        row = _mesh(_status(cfgs["a"]))["peers"].get("d")
        return row if row is not None and row["state"] == "down" else None

    row = _until("a marks d down", outsider_refused, 10.0, procs=procs)
    assert (row.get("books") or {}).get("consumed_requests", 0) == 0, row
    assert "heavy-test" not in row.get("models", ()), row
    assert "TLS" in (row.get("last_error") or ""), row
    assert "d" not in _mesh(_status(cfgs["a"]))["models"]["heavy-test"]["peers"]

    def d_sees_all_down() -> dict[str, Any] | None:
        peers = _mesh(_status(cfgs["d"]))["peers"]
        return peers if set(peers) >= {"a", "b", "c"} and all(
            p["state"] == "down" for p in peers.values()) else None

    d_peers = _until("d sees a, b and c, all down", d_sees_all_down, 10.0, procs=procs)
    assert all(not (p.get("books") or {}).get("consumed_requests") for p in d_peers.values())
    d_server = _mesh(_status(cfgs["d"]))["server"]
    assert d_server["inferences"] == 0, d_server

    # SIGKILL b while a offloads: no result lost, b down by the heartbeat, work goes on.
    before = _status(cfgs["a"])
    assert before is not None
    b.kill(signal.SIGKILL)
    killed_s = time.monotonic()

    def b_down() -> bool:
        status = _status(cfgs["a"])
        assert status is not None
        _no_result_lost(status)
        return bool(_mesh(status)["peers"]["b"]["state"] == "down")

    with _with_log(a):
        _until("a marks b down", b_down, 10.0, procs=(a, c))
    down_s = time.monotonic() - killed_s
    at_down = _status(cfgs["a"])
    assert at_down is not None

    def goes_on() -> dict[str, Any] | None:
        status = _status(cfgs["a"])
        assert status is not None
        _no_result_lost(status)
        heavy_now = _mesh(status)["models"]["heavy-test"]
        heavy_then = _mesh(at_down)["models"]["heavy-test"]
        grew = (heavy_now["local"] > heavy_then["local"]
                and _books(status, "c") > _books(at_down, "c") + 5)
        return status if grew else None

    with _with_log(a):
        after = _until("work goes on on a and c", goes_on, 15.0, procs=(a, c))
    assert _books(after, "b") - _books(at_down, "b") == 0
    print(f"b down {down_s:.2f} s after SIGKILL; failovers "
          f"{_mesh(after)['models']['heavy-test']['failovers']}")
    assert a.popen.poll() is None and c.popen.poll() is None
    assert not any(p["state"] == "up" for p in _mesh(_status(cfgs["d"]))["peers"].values())


def _liar(host: Host, tmp_path: Path, fleet: fl.Fleet, heavy: Path) -> Process:
    """A fleet member (valid certificate) whose answers are wrong: tests/mesh/liar_node.py."""
    tls = enroll(fleet, tmp_path / "fleet", "liar", hosts=["liar"]).files
    return host.popen([sys.executable, "-m", "tests.mesh.liar_node", "--name", "liar",
                       "--manifest", str(heavy), "--cert", str(tls.cert), "--key",
                       str(tls.key), "--ca", str(tls.ca), "--crl", str(tls.crl)],
                      cpu_quota=QUOTA, env={"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})


def _served_by(liar: Process) -> int:
    """Inferences the liar answered so far (its own count)."""
    return max((line["count"] for line in list(liar.lines) if line.get("event") == "served"),
               default=0)


def _inferences(cfg: Path) -> int:
    status = _status(cfg)
    return int(status["pipelines"]["watch"]["inferences"]) if status else 0


def _after_more_inferences(cfg: Path, n: int, procs: tuple[Process, ...]) -> None:
    """Wait until the pipeline has done ``n`` more inferences (the work goes on)."""
    start = _inferences(cfg)
    _until(f"{n} more inferences", lambda: _inferences(cfg) >= start + n, 30.0, procs=procs)


def _peers_cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_runtime", "peers", str(cfg), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


def test_a_lying_fleet_member_is_quarantined_persisted_and_reported(
        tmp_path: Path, make_net: Callable[[int], Net]) -> None:
    fleet, heavy, cfgs = _setup(tmp_path, ["a"], verify_fraction=1.0)
    cfg = cfgs["a"]
    net = make_net(2)
    liar = _liar(net.hosts[1], tmp_path, fleet, heavy)
    liar.wait_for(lambda line: line.get("event") == "registered", START_S)
    a = _start(net.hosts[0], cfg)

    def quarantined() -> dict[str, Any] | None:
        row = _peer_row(cfg, "liar")
        return row if row is not None and row.get("trust") == "quarantined" else None

    row = _until("a quarantines the liar", quarantined, START_S, procs=(a, liar))
    assert "top-1 class" in row["quarantine"]["reason"], row
    st = _status(cfg)
    assert st is not None
    heavy_stats = _mesh(st)["models"]["heavy-test"]
    assert heavy_stats["disagreements"] >= 1 and heavy_stats["verified"] >= 1, heavy_stats
    assert "liar" not in heavy_stats["peers"], heavy_stats
    state = cfg.parent / "state"
    trust = json.loads((state / "mesh" / "trust.json").read_text())
    assert "liar" in trust["quarantined"], trust
    event = _until("the security event in the outbox file", lambda: next(
        (e for e in read_events(state) if e["type"] == "security"), None), 10.0, procs=(a,))
    assert (event["name"], event["state"]) == ("liar", "quarantined"), event

    # No more work for it: the attempts out at the quarantine settle, then nothing.
    _after_more_inferences(cfg, 10, (a, liar))
    served, books = _served_by(liar), _books(_status(cfg) or {}, "liar")
    assert served >= 1 and books >= 1
    _after_more_inferences(cfg, 15, (a, liar))
    assert (_served_by(liar), _books(_status(cfg) or {}, "liar")) == (served, books)

    # A restart remembers: the liar is found again, up, and still gets nothing.
    # A clean stop (exit 0). Bounded at 30 s, not the usual 10: under this quota, with
    # the quarantined peer still up, the daemon once took about 11 s to stop; since the
    # offload fixes of 9d044e9 and f54bbd8 it takes 1.2 s (three runs), but the cause
    # was never pinned down, so the bound stays generous and the time is printed.
    stopping_s = time.monotonic()
    assert a.stop(timeout_s=30.0) == 0, a.stderr_tail()
    print(f"a stopped in {time.monotonic() - stopping_s:.1f} s")
    a = _start(net.hosts[0], cfg)

    def found_again() -> dict[str, Any] | None:
        row = _peer_row(cfg, "liar")
        return row if row is not None and row["state"] == "up" and row.get("url") else None

    row = _until("a finds the liar again after its restart", found_again, START_S,
                 procs=(a, liar))
    assert row["trust"] == "quarantined", row
    _after_more_inferences(cfg, 15, (a, liar))
    st = _status(cfg)
    assert st is not None
    assert (_served_by(liar), _books(st, "liar")) == (served, books)
    assert _mesh(st)["models"]["heavy-test"]["offloaded"] == 0, _mesh(st)["models"]

    # The operator clears it (the liar gone first, so that it is not caught again at once).
    assert liar.stop() == 0
    cleared = _peers_cli(cfg, "--clear", "liar")
    assert cleared.returncode == 0, cleared.stderr
    assert "liar" not in json.loads((state / "mesh" / "trust.json").read_text())["quarantined"]

    def trusted() -> dict[str, Any] | None:
        shown = _peers_cli(cfg, "--json")
        assert shown.returncode == 0, shown.stderr
        mesh = json.loads(shown.stdout)
        row = mesh["peers"].get("liar")
        return mesh if mesh.get("running") and row and row["trust"] == "trusted" else None

    _until("peers shows the liar trusted again", trusted, 15.0, procs=(a,))
