"""The node's page in a real headless Chromium, against a real daemon subprocess.

The daemon replays a sensor under the anomaly detector and runs the digits model on an
MJPEG camera (generated frames of a moving square). The page must show the numbers,
update them, draw the chart, refresh the live view, show the camera as down once its
server is killed, and come back by itself after the daemon restarts. The screenshot is
written under the test's tmp folder (its path is printed).
"""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from tests.helpers.media import MJPEGServer
from tests.web.helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    start_daemon,
    stop_daemon,
    wait_json,
    write_config,
)


def _attr(page: Page, selector: str, name: str) -> str:
    return page.locator(selector).first.get_attribute(name) or ""


def _text(page: Page, selector: str) -> str:
    return page.locator(selector).first.inner_text()


def _until(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"the page never showed {what}")


def test_page_shows_pipelines_live_chart_camera_and_a_dead_source(
        tmp_path: Path, outside_loop_guard: None) -> None:
    camera = MJPEGServer(fps=10.0)
    camera.start()
    port = free_port()
    cfg = write_config(tmp_path, port=port, camera_url=camera.url)
    base = f"http://127.0.0.1:{port}"
    proc = start_daemon(cfg)
    try:
        wait_json(f"{base}/api/status",
                  lambda d: d["status"]["pipelines"]["door"]["inferences"] > 0
                  and d["cameras"] == ["door"], timeout_s=30)
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=CHROMIUM,
                args=CHROMIUM_ARGS, headless=True, viewport={"width": 1280, "height": 1000})
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(base + "/")
                door = "[data-pipeline=door]"
                boiler = "[data-pipeline=boiler]"
                _until(lambda: _text(page, "#node") == "shelf-node", 10, "the node's name")
                _until(lambda: page.locator(boiler).count() == 1
                       and page.locator(door).count() == 1, 10, "both pipelines")
                assert _attr(page, "#conn", "data-state") == "live"
                # Rendered numbers, and they move.
                ipm = int(_text(page, f"{boiler} [data-field=ipm]"))
                assert ipm > 0
                assert "Hz" in _text(page, f"{boiler} [data-field=rate]")
                assert _text(page, f"{door} [data-field=source_state]") == "source up"
                assert "ms" in _text(page, f"{door} [data-field=latency]")
                assert "label" in _text(page, f"{door} [data-field=last]")
                uptime_before = _text(page, "#uptime")
                points_before = int(_attr(page, f"{boiler} canvas.chart", "data-points") or 0)
                _until(lambda: _text(page, "#uptime") != uptime_before, 5, "a new uptime")
                _until(lambda: int(_attr(page, f"{boiler} canvas.chart", "data-points") or 0)
                       >= points_before + 4, 10, "new chart points")
                # The live view: JPEGs of new frames keep arriving.
                img = f"{door} img.live"
                _until(lambda: int(_attr(page, img, "data-frames") or 0) >= 2, 10,
                       "camera frames")
                key_before = _attr(page, img, "data-key")
                frames_before = int(_attr(page, img, "data-frames"))
                _until(lambda: _attr(page, img, "data-key") != key_before
                       and int(_attr(page, img, "data-frames")) > frames_before, 10,
                       "a newer camera frame")
                assert page.locator(img).evaluate("i => i.naturalWidth") == 64
                shot = tmp_path / "overview.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot of the node's page: {shot}")
                # Kill the camera: the page says so.
                camera.stop()
                _until(lambda: "DISCONNECTED" in _text(page, f"{door} [data-field=source_state]")
                       or "SILENT" in _text(page, f"{door} [data-field=source_state]"), 15,
                       "the camera as down")
                page.screenshot(path=str(tmp_path / "camera-down.png"), full_page=True)
                print(f"screenshot with the camera down: {tmp_path / 'camera-down.png'}")
                # Restart the daemon: the page reconnects by itself, with a fresh chart.
                code, err = stop_daemon(proc)
                assert code == 0, err
                _until(lambda: _attr(page, "#conn", "data-state") == "reconnecting", 10,
                       "that it lost the daemon")
                proc = start_daemon(cfg)
                _until(lambda: _attr(page, "#conn", "data-state") == "live", 30,
                       "the daemon back")
                assert errors == [], errors
            finally:
                browser.close()
    finally:
        camera.stop()
        code, err = stop_daemon(proc)
    assert code == 0, err
