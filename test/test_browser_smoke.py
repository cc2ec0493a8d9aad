"""The headless-browser check of rerun's web viewer (test/browser_view.py) on a recording served the way `minivla eval
--view` serves one: it passes on the page that reads the recording, and fails on the same viewer's page without it.
The pixel checks themselves are shown able to fail on made-up screenshots, which needs no browser."""

import dataclasses
from urllib.parse import quote

import numpy as np
import pytest

from browser_view import (
    MARKER, MIN_COLOURS, browser_missing_reason, distinct_colours, free_port_pair, has_block, screenshot_viewer,
    shows)
from minivla_core.view import ViewerServer

APP_ID = "minivla_eval"


@pytest.fixture(scope="module")
def served_recording(tmp_path_factory):
    """(web port, gRPC URL) of a rerun viewer server (minivla_core/view.py's) holding a small recording: an image with
    a MARKER square, a scalar plot, a 3-D line strip, and a blueprint of a 2-D, a 3-D and a time-series view."""
    reason = browser_missing_reason()
    if reason:
        pytest.skip(reason)
    import rerun as rr
    import rerun.blueprint as rrb

    server = ViewerServer(free_port_pair())  # as `minivla eval --view` serves its recording
    web_port, grpc_url = server.port, server.uri
    recording = None
    try:
        recording = rr.RecordingStream(APP_ID)
        blueprint = rrb.Blueprint(rrb.Horizontal(rrb.Spatial2DView(origin="camera", name="camera"),
                                                 rrb.Spatial3DView(origin="world", name="world"),
                                                 rrb.TimeSeriesView(origin="plot", name="plot")))
        recording.connect_grpc(grpc_url, default_blueprint=blueprint)
        image = np.full((96, 96, 3), 30, dtype=np.uint8)
        image[16:80, 16:80] = MARKER
        for step in range(5):
            recording.set_time("step", sequence=step)
            recording.log("camera/image", rr.Image(image))
            recording.log("plot/value", rr.Scalars(np.sin(step)))
            recording.log("world/path", rr.LineStrips3D([[[0, 0, 0], [0.1, 0.05 * step, 0.1]]]))
        recording.flush()  # the server keeps what it got for viewers that connect later
        yield web_port, grpc_url
    finally:
        if recording is not None:
            recording.disconnect()
        server.close()


def test_viewer_shows_the_served_recording(served_recording, tmp_path):
    web_port, grpc_url = served_recording
    url = f"http://127.0.0.1:{web_port}/?url={quote(grpc_url, safe='')}"
    seen = screenshot_viewer(url, tmp_path / "viewer.png", app_id=APP_ID,
                             views=frozenset({"2D:camera", "3D:world", "TimeSeries:plot"}))
    assert seen.shown, seen
    assert seen.active_recording.startswith(f"Recording:{APP_ID}:"), seen
    assert seen.marker_seen, seen
    assert {"2D:camera", "3D:world", "TimeSeries:plot"} <= set(seen.views), seen
    assert seen.screenshot.stat().st_size > 0

    # What the page showed is not enough for a view its blueprint lacks, another app, or a marker it did not draw.
    assert not shows(seen, APP_ID, frozenset({"2D:camera", "2D:no such view"}), marker=True)
    assert not shows(seen, "another_app", frozenset(), marker=True)
    assert not shows(dataclasses.replace(seen, marker_seen=False), APP_ID, frozenset(), marker=True)
    assert shows(dataclasses.replace(seen, marker_seen=False), APP_ID, frozenset(), marker=False)


def test_viewer_page_without_the_recording_fails_the_check(served_recording, tmp_path):
    """The same viewer with no ?url= opens on rerun's welcome screen: drawn, so not blank, but not the recording."""
    web_port, _ = served_recording
    seen = screenshot_viewer(f"http://127.0.0.1:{web_port}/", tmp_path / "welcome.png", app_id=APP_ID, timeout_s=30)
    assert not seen.shown, seen
    assert seen.active_recording == "" and not seen.marker_seen, seen
    assert seen.distinct_colours >= MIN_COLOURS, f"the welcome screen was not drawn, so this proves nothing: {seen}"


def test_pixel_checks_fail_on_blank_and_scattered_pixels():
    blank = np.full((200, 300, 3), 20, dtype=np.uint8)
    assert distinct_colours(blank) == 1
    assert not has_block(blank, MARKER)

    scattered = blank.copy()
    scattered[::2, ::2] = MARKER  # many marker pixels, no solid square
    assert not has_block(scattered, MARKER)

    square = blank.copy()
    square[50:66, 100:116] = MARKER  # exactly 16 x 16
    assert has_block(square, MARKER)
    square[57, 107] = (254, 0, 255)  # one pixel off: no longer solid
    assert not has_block(square, MARKER)
