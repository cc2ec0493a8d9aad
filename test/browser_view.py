"""Look at rerun's web viewer (what `minivla eval --view` serves) in a headless browser, for the tests: Debian's
chromium driven by playwright (scripts/setup_browser.sh installs both; playwright's own browser downloads are not
used), drawing WebGL in software (SwiftShader through ANGLE), as on a machine without a GPU or a display.

The viewer draws everything with egui into one canvas, so the page has no text to read. What says that it shows the
recording instead, read by polling until both agree or time runs out:
    the viewer's own state   once the app has started, the page that rerun-sdk bundles (pinned in requirements.txt)
                             keeps its WebHandle as `window._handle`; `viewer_state()` returns the Viewer Control API's
                             GetStateResponse (protobuf): field 2 is the active recording, "Recording:APP_ID:ID", and
                             field 5 the views of its blueprint. On rerun's welcome screen, on the loading screen, or
                             when the data source failed, there is no active recording.
    the pixels               the state says the data arrived, not that anything was drawn: the caller logs an image
                             with a block of a marker colour that rerun's UI does not use (pure magenta), and the
                             screenshot must hold a solid MARKER_BLOCK x MARKER_BLOCK square of exactly that colour. A
                             square, not a pixel count: anti-aliased text or icons never make one, only the image does.
    not blank                a screenshot of a few colours is an empty page or a canvas never drawn: rerun's welcome
                             screen alone has about a thousand distinct colours (its anti-aliased text).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/setup_browser.sh)
# --no-sandbox: chromium's sandbox refuses to run as root (as in containers); SwiftShader: WebGL without a GPU, which
# chromium only allows software WebGL with --enable-unsafe-swiftshader.
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
MARKER = (255, 0, 255)  # a colour for the caller's image that no part of rerun's own UI is drawn in
MARKER_BLOCK = 16  # pixels: the side of the solid square of MARKER that counts as the image being drawn
MIN_COLOURS = 16  # fewer distinct colours in a screenshot: blank
POLL_S = 1.0


@dataclass
class BrowserView:
    """What the headless browser saw on the viewer page, at the end of `screenshot_viewer`."""

    shown: bool  # the recording is active with the views asked for, drawn (the marker block, when one was asked for),
    # and the page not blank
    active_recording: str  # the viewer's active recording, "Recording:APP_ID:RECORDING_ID"; "" when none
    views: list[str]  # the views of the active blueprint, as "CLASS:NAME", e.g. "2D:camera"
    marker_seen: bool  # a solid MARKER_BLOCK-sided square of the marker colour is in the screenshot
    distinct_colours: int  # in the screenshot
    seconds: float  # from opening the page until it showed the recording, or until giving up
    screenshot: Path  # the last screenshot taken (PNG)
    panic: str = ""  # the viewer's panic message, when it crashed
    console_errors: list[str] = field(default_factory=list)  # the page's console errors, each once, in order


def free_port_pair() -> int:
    """A port free on 127.0.0.1 whose next one is free too (a ViewerServer's page and recording ports)."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two neighbouring ports are free on 127.0.0.1")


def browser_missing_reason() -> str | None:
    """Why the browser tests cannot run here (for pytest.skip), or None when they can."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"no {CHROMIUM}: run scripts/setup_browser.sh (Debian's chromium package)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed in this Python: run scripts/setup_browser.sh"
    return None


def policy_view_layout(camera: str) -> frozenset[str]:
    """The views of PolicyView's blueprint (minivla_core/view.py) for a policy with one camera, `camera`, as the
    viewer names them."""
    return frozenset({f"2D:{camera}", "3D:hand and planned chunk (orange: executed)",
                      "3D:denoising (timeline denoise_step)", "TimeSeries:applied action", "TimeSeries:state",
                      "TextLog:episodes"})


def screenshot_viewer(url: str, path: Path, app_id: str = "minivla_eval", marker: tuple | None = MARKER,
                      views: frozenset[str] = frozenset(), timeout_s: float = 120.0,
                      viewport: tuple[int, int] = (1280, 800)) -> BrowserView:
    """Open rerun's web viewer at `url` in headless chromium and wait, up to `timeout_s`, until it shows the recording
    of `app_id` with at least `views` ("CLASS:NAME": the blueprint, which can arrive after the data is first drawn
    in a default layout) and, unless `marker` is None, draws a block of the `marker` colour; save the last screenshot to
    `path` and return what was seen. A page that loads but does not show the recording is not an error (the result
    says so); one that cannot load at all (no server there) raises playwright's error."""
    from playwright.sync_api import sync_playwright

    path = Path(path)
    console_errors: list[str] = []

    def keep_error(message) -> None:
        text = message.text.splitlines()[0] if message.text else ""
        if message.type == "error" and text not in console_errors:
            console_errors.append(text)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.on("console", keep_error)
            start = time.monotonic()
            page.goto(url)
            while True:
                time.sleep(POLL_S)
                state = read_viewer_state(page)
                png = page.screenshot()
                pixels = png_pixels(png)
                seen = BrowserView(
                    shown=False, active_recording=state["active_recording"], views=state["views"],
                    marker_seen=marker is not None and has_block(pixels, marker),
                    distinct_colours=distinct_colours(pixels), seconds=time.monotonic() - start, screenshot=path,
                    panic=state["panic"], console_errors=console_errors)
                seen.shown = shows(seen, app_id, views, marker is not None)
                if seen.shown or seen.panic or seen.seconds > timeout_s:
                    break
        finally:
            browser.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return seen


def shows(seen: BrowserView, app_id: str, views: frozenset[str], marker: bool) -> bool:
    """Whether what the browser saw is the recording of `app_id`, with at least `views`, the marker block (if
    `marker`), and not a blank page."""
    return (seen.active_recording.startswith(f"Recording:{app_id}:") and views <= set(seen.views)
            and (seen.marker_seen or not marker) and seen.distinct_colours >= MIN_COLOURS)


def read_viewer_state(page) -> dict:
    """The viewer's active recording and views, and its panic message; all empty before the app has started."""
    raw = page.evaluate("""() => {
        const handle = window._handle;  // set by rerun's index.html once the app has started
        if (!handle) return null;
        if (handle.has_panicked()) return {panic: handle.panic_message() || "(no message)"};
        try { return {state: Array.from(handle.viewer_state())}; } catch (error) { return {error: String(error)}; }
    }""") or {}
    state = {"active_recording": "", "views": [], "panic": raw.get("panic", "")}
    for number, value in protobuf_fields(bytes(raw.get("state", []))):
        if number == 2:  # GetStateResponse.active_store_id
            state["active_recording"] = value.decode()
        elif number == 5:  # GetStateResponse.views: a View's field 2 is its class, field 3 its name
            view = dict(protobuf_fields(value))
            state["views"].append(f"{view.get(2, b'').decode()}:{view.get(3, b'').decode()}")
    return state


def protobuf_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """A protobuf message's top-level fields, in order, as (field number, value): varints as int, the rest (strings,
    nested messages, fixed-size numbers) as bytes. Enough to read GetStateResponse without rerun's .proto files."""
    fields, at = [], 0
    while at < len(data):
        key, at = read_varint(data, at)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, at = read_varint(data, at)
        else:
            if wire_type == 2:
                size, at = read_varint(data, at)
            elif wire_type in (1, 5):
                size = 8 if wire_type == 1 else 4
            else:
                raise ValueError(f"viewer_state: protobuf wire type {wire_type} at byte {at}, expected 0, 1, 2 or 5")
            value, at = data[at:at + size], at + size
        fields.append((number, value))
    return fields


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def png_pixels(png: bytes) -> np.ndarray:
    """(H, W, 3) RGB, decoded by OpenCV (a requirement already; its own order is BGR)."""
    import cv2

    return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def distinct_colours(pixels: np.ndarray) -> int:
    return len(np.unique(pixels.reshape(-1, 3), axis=0))


def has_block(pixels: np.ndarray, colour: tuple, side: int = MARKER_BLOCK) -> bool:
    """Whether `pixels` (H, W, 3) hold a solid side x side square of exactly `colour`: the count of matching pixels
    in every side x side window, from a summed-area table, equals side²."""
    match = np.all(pixels == np.asarray(colour, dtype=pixels.dtype), axis=-1).astype(np.int64)
    table = np.pad(match.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    windows = table[side:, side:] - table[:-side, side:] - table[side:, :-side] + table[:-side, :-side]
    return bool(windows.size) and bool((windows == side * side).any())


def view_command(command: list[str], path: Path, app_id: str, views: frozenset[str] = frozenset(),
                 timeout_s: float = 600.0) -> tuple[BrowserView, str, int]:
    """Run a `minivla ... --view` command (its argument list, run from the repository root), wait until it says the
    viewer keeps serving (its run is over), look at the page it printed until it shows `views` (screenshot_viewer),
    then Ctrl-C it: (what the browser saw, its output, its exit code). Stopped, killed if need be, whatever happens."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               errors="replace")
    lines: list[str] = []
    try:
        reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout_s
        while not any("the viewer keeps serving" in line for line in lines):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"`{' '.join(command)}` never said it keeps serving:\n{''.join(lines)[-3000:]}")
            time.sleep(0.2)
        url = next(line.split()[1] for line in lines if line.startswith("viewer: "))
        seen = screenshot_viewer(url, path, app_id=app_id, marker=None, views=views)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
        reader.join(timeout=10)
        return seen, "".join(lines), code
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def listening_addresses(port: int) -> set[str]:
    """The local addresses (dotted IPv4, or "IPv6") this computer listens on at TCP `port` (Linux's /proc/net)."""
    found = set()
    for table, kind in (("/proc/net/tcp", "IPv4"), ("/proc/net/tcp6", "IPv6")):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]) if kind == "IPv4" else "IPv6")
    return found
