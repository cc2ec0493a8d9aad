"""`minivla eval --view` looked at in a real browser (headless chromium: test/browser_view.py): the page it prints
shows the evaluation's recording, laid out by its blueprint, not rerun's welcome screen. Skipped, saying why, where
scripts/setup_browser.sh could not install the browser."""

import sys

import pytest

from browser_view import browser_missing_reason, free_port_pair, policy_view_layout, view_command
from minivla_core.checkpoint import read_checkpoint


@pytest.fixture
def browser():
    reason = browser_missing_reason()
    if reason:
        pytest.skip(reason)


def test_eval_view_shows_the_evaluation_in_the_browser(browser, tiny_checkpoint, tmp_path):
    port = free_port_pair()
    camera = read_checkpoint(tiny_checkpoint)["env"]["camera"]
    command = [sys.executable, "-m", "minivla", "eval", "--checkpoint", str(tiny_checkpoint), "--episodes", "3",
               "--max-episode-steps", "6", "--view", "--view-port", str(port)]
    seen, output, code = view_command(command, tmp_path / "eval_view.png", "minivla_eval", policy_view_layout(camera))
    assert seen.shown, (seen, output[-2000:])  # the recording, laid out by its blueprint
    assert seen.distinct_colours > 100, seen  # a drawn page (rerun's UI and the camera image), not a blank one
    assert code == 0, output[-2000:]  # Ctrl-C ends the serving: a normal end
    assert "3 episodes" in output or "/3 =" in output, output[-2000:]

