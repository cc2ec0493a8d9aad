"""The rerun view of an evaluation (minivla_core/view.py), read back with rerun's own reader: the recording holds what
the policy saw and planned, and the episodes are the same with the view on or off."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from browser_view import free_port_pair, listening_addresses
from minivla_test_utils import ROOT
from minivla_core.actions import HAND_STEP
from minivla_core.config import Config
from minivla_core.errors import ConfigError

rerun_chunk = pytest.importorskip("rerun.chunk", reason="rerun-sdk (requirements.txt) is not installed: "
                                  "minivla eval --view needs it")


def minivla(*args):
    return subprocess.run([sys.executable, "-m", "minivla", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def rows_by_step(chunks: list, entity: str, column: str, timeline: str = "step") -> list:
    """The values of `column` logged at `entity`, in the order of `timeline`."""
    rows = []
    for chunk in chunks:
        if chunk.entity_path == entity and not chunk.is_static:
            batch = chunk.to_record_batch()
            rows += zip(batch.column(timeline).to_pylist(), batch.column(column).to_pylist())
    return [value for _, value in sorted(rows, key=lambda row: row[0])]


def row_counts(chunks: list) -> dict:
    """entity -> rows logged on a timeline (the plots' series names are static: no step of their own)."""
    rows = {}
    for chunk in chunks:
        if not chunk.is_static:
            rows[chunk.entity_path] = rows.get(chunk.entity_path, 0) + chunk.num_rows
    return rows


def eval_on_and_off(tmp_path, recording, *args) -> dict:
    """`minivla eval ARGS` without the view and with --view-save `recording`: name -> its episodes."""
    episodes = {}
    for name, view in {"off": [], "on": ["--view-save", recording]}.items():
        out = tmp_path / f"{name}.json"
        result = minivla("eval", *args, "--json", out, *view)
        assert result.returncode == 0, result.stderr
        episodes[name] = json.loads(out.read_text())["per_episode"]
    return episodes


def test_eval_view_save_records_what_the_policy_sees_and_plans(tmp_path, tiny_checkpoint):
    from minivla_core.checkpoint import read_checkpoint

    recording = tmp_path / "view" / "eval.rrd"
    episodes = eval_on_and_off(tmp_path, recording, "--checkpoint", tiny_checkpoint, "--episodes", "2",
                               "--max-episode-steps", "5")
    assert episodes["on"] == episodes["off"]  # the view changes nothing the policy does

    reader = rerun_chunk.RrdReader(recording)
    assert [entry.application_id for entry in reader.blueprints()] == ["minivla_eval"]  # the layout travels with it
    chunks = list(reader.stream())
    rows = row_counts(chunks)
    payload = read_checkpoint(tiny_checkpoint)
    steps = sum(e["steps"] for e in episodes["on"])
    n_action_steps, inference_steps = payload["model_config"]["n_action_steps"], payload["model_config"][
        "inference_steps"]
    sampled = sum(math.ceil(e["steps"] / n_action_steps) for e in episodes["on"])
    camera = f"/camera/{payload['env']['camera']}"
    assert {path: rows.get(path) for path in [camera, "/state", "/action", "/world/hand", "/world/plan/executed"]} \
        == dict.fromkeys([camera, "/state", "/action", "/world/hand", "/world/plan/executed"], steps)
    assert rows["/world/plan/chunk"] == rows["/policy/sample_ms"] == sampled
    assert rows["/world/denoising"] == sampled * inference_steps
    assert rows["/episode/success"] == 2 and rows["/episode/log"] == 4  # each episode's start and end
    denoising = [chunk for chunk in chunks if chunk.entity_path == "/world/denoising"]
    assert all("denoise_step" in chunk.timeline_names for chunk in denoising)

    # The first planned path starts at the hand (the state's first 3 numbers) and moves HAND_STEP per unit of action.
    first_path = np.array(rows_by_step(chunks, "/world/plan/chunk", "LineStrips3D:strips")[0][0])
    states = np.array(rows_by_step(chunks, "/state", "Scalars:scalars"))
    actions = np.array(rows_by_step(chunks, "/action", "Scalars:scalars"))
    assert first_path.shape == (payload["model_config"]["horizon"] + 1, 3)
    np.testing.assert_allclose(first_path[0], states[0, :3], atol=1e-6)
    np.testing.assert_allclose(np.diff(first_path[:3], axis=0), HAND_STEP * actions[:2, :3], atol=1e-6)


def test_eval_view_of_timed_execution_shows_each_chunk_from_its_observation(tmp_path, tiny_checkpoint):
    """`minivla eval --latency`: each observation and applied action, each chunk when it is sampled (at its
    observation, while the chunk before runs on) with its denoising, which ends at that chunk, frozen actions and
    all; the episodes, executor counts included, are the same with the view on or off."""
    from minivla_core.checkpoint import read_checkpoint

    recording = tmp_path / "timed.rrd"
    episodes = eval_on_and_off(tmp_path, recording, "--checkpoint", tiny_checkpoint, "--episodes", "2",
                               "--max-episode-steps", "12", "--latency", "0.1")
    assert episodes["on"] == episodes["off"]
    assert all(e["executor"]["late"] > 0 for e in episodes["on"])  # chunks arrived after steps had passed

    chunks = list(rerun_chunk.RrdReader(recording).stream())
    rows = row_counts(chunks)
    payload = read_checkpoint(tiny_checkpoint)
    steps = sum(e["steps"] for e in episodes["on"])
    camera = f"/camera/{payload['env']['camera']}"
    assert [rows.get(path) for path in (camera, "/state", "/action")] == [steps] * 3
    sampled = rows["/world/plan/chunk"]
    assert sampled == rows["/policy/sample_ms"] and sampled >= 2 * len(episodes["on"])
    assert 0 < rows["/world/plan/executed"] < sum(e["executor"]["applied"] for e in episodes["on"]) + 1

    # Each chunk's denoising ends at the chunk shown: the last of its DDIM steps draws the same path. At this latency
    # the schedule stretches chunks once it has measured it (timed.py: each action spread over 2 steps): the same
    # path with twice the points.
    inference_steps = payload["model_config"]["inference_steps"]
    paths = rows_by_step(chunks, "/world/plan/chunk", "LineStrips3D:strips")
    denoising = rows_by_step(chunks, "/world/denoising", "LineStrips3D:strips", timeline="denoise_step")
    assert len(denoising) == sampled * inference_steps
    for path, last_step in zip(paths, denoising[inference_steps - 1::inference_steps]):
        path, last_step = np.array(path[0]), np.array(last_step[0])
        stretch = (len(path) - 1) // (len(last_step) - 1)
        assert len(path) - 1 == stretch * (len(last_step) - 1) and stretch in (1, 2)
        np.testing.assert_allclose(last_step, path[::stretch], atol=1e-4)
    assert len(paths[-1][0]) > len(paths[0][0])  # stretched by then


def runner_and_observation(checkpoint, seed: int):
    """A PolicyRunner of `checkpoint` at episode 0, and random images with a state for it."""
    from minivla_core.checkpoint import load_policy
    from minivla_core.model.policy import PolicyRunner

    policy, payload = load_policy(checkpoint)
    runner = PolicyRunner(policy, "push the puck to the goal", seed=seed)
    runner.reset(0)
    size = payload["env"]["image_size"]
    images = np.random.default_rng(seed).integers(0, 256, (policy.cameras, size, size, 3), dtype=np.uint8)
    return runner, images, np.array([0.0, 0.6, 0.2, 1.0], dtype=np.float32)


def test_the_denoising_shown_ends_at_the_chunk_executed(tiny_checkpoint):
    """runner.denoising() runs the torch sampler again with the chunk's noise: one chunk per DDIM step, the last the
    one the engine (ONNX Runtime) sampled, to float rounding."""
    runner, images, state = runner_and_observation(tiny_checkpoint, seed=3)
    runner.act(images, state)
    steps = runner.denoising(images, state)
    assert len(steps) == runner.inference_steps
    np.testing.assert_allclose(steps[-1], runner.last_chunk, atol=1e-4)
    assert not np.allclose(steps[0], steps[-1], atol=1e-3)  # the first step is still mostly noise


@pytest.mark.parametrize("setting, message", [
    ({"view_save": "x.rrd", "workers": 2}, "view with eval.workers 1"),
    ({"view_save": "x.mp4"}, "name it .rrd"),
])
def test_a_view_it_cannot_show_is_refused(setting, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"eval": setting})


def test_the_denoising_of_an_inpainted_chunk_ends_at_it_even_after_later_sampling(tiny_checkpoint):
    """Timed execution samples with frozen actions (inpainting); its denoising runs the same, and a viewer on another
    thread may ask for it after the runner sampled again (the node's view: its last_sampling then)."""
    runner, images, state = runner_and_observation(tiny_checkpoint, seed=5)
    frozen = runner.sample_chunk(images, state)[:2]
    chunk = runner.sample_continuing(images, state, frozen)
    sampling = runner.last_sampling
    runner.sample_continuing(images, state, chunk[:3])  # the runner goes on
    steps = runner.denoising(images, state, sampling)
    assert len(steps) == runner.inference_steps
    np.testing.assert_allclose(steps[-1], chunk, atol=1e-4)
    np.testing.assert_allclose(steps[-1][:2], frozen, atol=1e-4)  # the frozen actions, kept


def test_a_live_view_never_waits_and_shows_each_step_whole(tmp_path):
    """A view that falls behind (here: a denoising that blocks) drops steps, counted, never holding up the caller;
    a step is shown whole or not at all, an episode's start and end always; a failure is reported and the view
    goes on."""
    import threading
    import time

    from minivla_core.view import LiveView, PolicyView

    recording, errors, release = tmp_path / "live.rrd", [], threading.Event()
    live = LiveView(PolicyView(save=str(recording)), errors.append, max_queued=4)
    images, state, chunk = np.zeros((1, 8, 8, 3), np.uint8), np.array([0.0, 0.6, 0.2, 1.0]), np.zeros((4, 4))
    live.start_episode("push-v3", 0, "push the puck", ["corner"], HAND_STEP)
    live.observe(images, state, 1.0)
    live.chunk(state, chunk, 0.01, lambda: [chunk] if release.wait(60) else [])
    live.action(chunk[0], 0)
    for step in range(40):  # the view's thread is stuck in the denoising above
        live.observe(images, state, 2.0 + step)
        live.action(chunk[0], 1)
        assert live.queue.qsize() <= 4 + 2  # a step's chunk and action past the limit at most
    live.chunk(state, chunk, 0.01, lambda: 1 / 0)
    live.end_episode(True, 41)
    assert live.dropped >= 40 - 4
    release.set()
    while live.queue.qsize():  # the view catches up
        time.sleep(0.01)
    live.observe(images, state, 100.0)
    live.chunk(state, chunk, 0.01, lambda: 1 / 0)  # a failure in the view's thread: reported, the view goes on
    live.observe(images, state, 101.0)
    live.close()
    assert any("ZeroDivisionError" in error for error in errors)

    chunks = list(rerun_chunk.RrdReader(recording).stream())
    steps = {name: rows_by_step(chunks, f"/{name}", column) for name, column in
             [("state", "Scalars:scalars"), ("action", "Scalars:scalars"), ("episode/log", "TextLog:text")]}
    assert len(steps["episode/log"]) == 2  # the start and the end, though steps around them were dropped
    assert len(steps["state"]) == 41 - live.dropped + 2  # those not dropped, and the two after the release
    assert len(steps["action"]) == len(steps["state"]) - 2  # each shown step's action; none without its step


def test_the_viewer_listens_on_this_computer_only():
    from minivla_core.view import ViewerServer

    port = free_port_pair()
    server = ViewerServer(port)
    try:
        assert listening_addresses(port) == listening_addresses(port + 1) == {"127.0.0.1"}
    finally:
        server.close()
    assert listening_addresses(port) == set()  # closed with the command
