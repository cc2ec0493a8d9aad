"""The rerun view of an evaluation (minivla_core/view.py), read back with rerun's own reader: the recording holds what
the policy saw and planned, and the episodes are the same with the view on or off."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from minivla_test_utils import ROOT
from minivla_core.actions import HAND_STEP
from minivla_core.config import Config
from minivla_core.errors import ConfigError

rerun_chunk = pytest.importorskip("rerun.chunk", reason="rerun-sdk (requirements.txt) is not installed: "
                                  "minivla eval --view needs it")


def minivla(*args):
    return subprocess.run([sys.executable, "-m", "minivla", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def rows_by_step(chunks: list, entity: str, column: str) -> list:
    """The values of `column` logged at `entity`, in the order of the "step" timeline."""
    rows = []
    for chunk in chunks:
        if chunk.entity_path == entity and not chunk.is_static:
            batch = chunk.to_record_batch()
            rows += zip(batch.column("step").to_pylist(), batch.column(column).to_pylist())
    return [value for _, value in sorted(rows, key=lambda row: row[0])]


def test_eval_view_save_records_what_the_policy_sees_and_plans(tmp_path, tiny_checkpoint):
    from minivla_core.checkpoint import read_checkpoint

    recording = tmp_path / "view" / "eval.rrd"
    episodes = {}
    for name, view in {"off": [], "on": ["--view-save", recording]}.items():
        out = tmp_path / f"{name}.json"
        result = minivla("eval", "--checkpoint", tiny_checkpoint, "--episodes", "2", "--max-episode-steps", "5",
                         "--json", out, *view)
        assert result.returncode == 0, result.stderr
        episodes[name] = json.loads(out.read_text())["per_episode"]
    assert episodes["on"] == episodes["off"]  # the view changes nothing the policy does

    reader = rerun_chunk.RrdReader(recording)
    assert [entry.application_id for entry in reader.blueprints()] == ["minivla_eval"]  # the layout travels with it
    chunks = list(reader.stream())
    rows = {}
    for chunk in chunks:
        if not chunk.is_static:  # the plots' series names are static: no step of their own
            rows[chunk.entity_path] = rows.get(chunk.entity_path, 0) + chunk.num_rows
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


def test_the_denoising_shown_ends_at_the_chunk_executed(tiny_checkpoint):
    """runner.denoising() runs the torch sampler again with the chunk's noise: one chunk per DDIM step, the last the
    one the engine (ONNX Runtime) sampled, to float rounding."""
    from minivla_core.checkpoint import load_policy
    from minivla_core.model.policy import PolicyRunner

    policy, payload = load_policy(tiny_checkpoint)
    runner = PolicyRunner(policy, "push the puck to the goal", seed=3)
    runner.reset(0)
    size = payload["env"]["image_size"]
    images = np.random.default_rng(0).integers(0, 256, (policy.cameras, size, size, 3), dtype=np.uint8)
    state = np.array([0.0, 0.6, 0.2, 1.0], dtype=np.float32)
    runner.act(images, state)
    steps = runner.denoising(images, state)
    assert len(steps) == runner.inference_steps
    np.testing.assert_allclose(steps[-1], runner.last_chunk, atol=1e-4)
    assert not np.allclose(steps[0], steps[-1], atol=1e-3)  # the first step is still mostly noise


@pytest.mark.parametrize("setting, message", [
    ({"view_save": "x.rrd", "workers": 2}, "view with eval.workers 1"),
    ({"view": True, "latency": 0.1}, "view with eval.latency 0"),
    ({"view_save": "x.mp4"}, "name it .rrd"),
])
def test_a_view_it_cannot_show_is_refused(setting, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"eval": setting})
