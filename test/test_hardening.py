"""Untrusted input in the core: datasets, checkpoints, states and instructions that must be refused by name.

Each test reproduces a probe from issue 10 (its number in brackets) that passed silently before.
"""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from minivla_test_utils import ROOT, tiny_model_config
from minivla_core.checkpoint import load_policy, read_checkpoint, save_checkpoint
from minivla_core.config import CollectConfig, EnvConfig
from minivla_core.data.collect import collect
from minivla_core.data.dataset import DatasetWriter, load_episodes, read_index
from minivla_core.errors import CheckpointError, DatasetError, InstructionError
from minivla_core.model.policy import PolicyRunner, VLAPolicy
from minivla_core.model.tokenizer import WordTokenizer, check_instruction


def minivla(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "minivla", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def tiny_policy(state_dim=4):
    vocab = WordTokenizer.from_texts(["push the puck to the goal"]).vocab
    policy = VLAPolicy(tiny_model_config(), vocab, state_dim, 4, image_size=32)
    policy.state_normalizer.fit(torch.randn(100, state_dim) * 0.1)
    policy.action_normalizer.fit(torch.rand(100, 4) * 2 - 1)
    return policy


ENV = {"task": "push-v3", "observation": "proprio", "camera": "corner2", "camera_position": [0.75, 0.075, 0.7],
       "image_size": 32}


# --- [3] non-finite data never trains a model ----------------------------------------------------------------

def test_non_finite_or_out_of_range_steps_are_refused_when_written(tmp_path):
    with DatasetWriter(tmp_path / "d", image_size=8, state_dim=3, action_dim=4, observation="proprio") as writer:
        images, states, actions = np.zeros((5, 8, 8, 3)), np.zeros((5, 3)), np.zeros((5, 4))
        actions[3, 1] = np.nan
        with pytest.raises(DatasetError, match="action at step 3 is not finite"):
            writer.append(images, states, actions, task="push-v3", instruction="x")
        actions[3, 1] = 1e9
        with pytest.raises(DatasetError, match=r"action at step 3 is outside \[-1, 1\]"):
            writer.append(images, states, actions, task="push-v3", instruction="x")
        states[0, 2] = np.inf
        with pytest.raises(DatasetError, match="state at step 0 is not finite"):
            writer.append(images, states, np.zeros((5, 4)), task="push-v3", instruction="x")
    assert read_index(tmp_path / "d") == []  # nothing half-written


def test_a_nan_in_an_episode_file_stops_training_naming_the_file(tmp_path, two_episode_dataset):
    dataset = tmp_path / "poisoned"
    subprocess.run(["cp", "-r", str(two_episode_dataset), str(dataset)], check=True)
    path = dataset / "episodes" / "000001.npz"
    with np.load(path) as arrays:
        episode = dict(arrays)
    episode["actions"][7, 0] = np.nan  # written around the writer's checks, as a hostile dataset would be
    np.savez_compressed(path, **episode)
    result = minivla("train", "--dataset", dataset, "--out", tmp_path / "run", "--image-size", "32", "--epochs", "1")
    assert result.returncode == 2, result.stderr
    assert "000001.npz: the action at step 7 is not finite" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run" / "best.pt").exists()


def test_a_corrupt_episode_file_is_named(tmp_path, two_episode_dataset):
    dataset = tmp_path / "corrupt"
    subprocess.run(["cp", "-r", str(two_episode_dataset), str(dataset)], check=True)
    path = dataset / "episodes" / "000000.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 3: len(data) // 3 + 64] = os.urandom(64)  # inside a deflate stream: a zlib error
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="000000.npz is unreadable or truncated"):
        load_episodes(dataset)


def test_checkpoints_with_non_finite_weights_are_refused(tmp_path):
    policy = tiny_policy()
    with torch.no_grad():
        next(policy.parameters()).fill_(float("nan"))
    save_checkpoint(tmp_path / "nan.pt", policy, ENV)
    with pytest.raises(CheckpointError, match="NaN or infinite weights"):
        load_policy(tmp_path / "nan.pt")


# --- [4] concurrent writers, [12] collecting again ----------------------------------------------------------

def test_a_second_writer_is_refused_while_the_first_writes(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from minivla_core.data.dataset import DatasetWriter; "
         f"w = DatasetWriter({str(tmp_path / 'd')!r}, 8, 4, 4, 'proprio'); print('holding', flush=True); "
         "time.sleep(60)"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(DatasetError, match="being written by another process"):
            collect(EnvConfig(image_size=8), CollectConfig(out=str(tmp_path / "d"), episodes=1), progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert read_index(tmp_path / "d") == []
    with DatasetWriter(tmp_path / "d", 8, 4, 4, "proprio"):  # the lock went with its holder
        pass


def test_collecting_again_finishes_what_is_missing_and_a_larger_number_adds_new_layouts(tmp_path):
    """collect.episodes is what each task should hold: the same command again records nothing (an interrupted run
    resumes), a larger number continues on layouts after the last one kept."""
    out = str(tmp_path / "d")
    assert collect(EnvConfig(image_size=16), CollectConfig(out=out, episodes=2), progress=False).kept == 2
    assert collect(EnvConfig(image_size=16), CollectConfig(out=out, episodes=2), progress=False).kept == 0
    assert collect(EnvConfig(image_size=16), CollectConfig(out=out, episodes=4), progress=False).kept == 2
    layouts = [entry["episode"] for entry in read_index(out)]
    assert len(layouts) == 4 and len(set(layouts)) == 4, layouts


# --- [6] states that cannot be a robot's ----------------------------------------------------------------------

def test_a_huge_finite_state_is_refused_instead_of_sampling_nan():
    runner = PolicyRunner(tiny_policy(), "push the puck to the goal")
    image = np.zeros((1, 32, 32, 3), np.uint8)
    assert np.all(np.isfinite(runner.act(image, np.zeros(4, np.float32))))
    for value in (1e20, -3e38, 1e6):
        with pytest.raises(ValueError, match="standard deviations from the training states"):
            runner.act(image, np.array([0, 0, value, 0], np.float32))


def test_eval_counts_a_refused_observation_as_a_failed_episode_and_goes_on(tmp_path):
    """A policy trained on states near 0 (spread 0.001) refuses Meta-World's real hand position: each episode
    ends failed at once, as the policy node would hold, and the evaluation carries on to report them all."""
    from minivla_core.config import EvalConfig
    from minivla_core.evaluate import evaluate

    policy = tiny_policy()
    policy.state_normalizer.fit(torch.randn(100, 4) * 0.001)
    save_checkpoint(tmp_path / "narrow.pt", policy, ENV)
    result = evaluate(EvalConfig(checkpoint=str(tmp_path / "narrow.pt"), episodes=2), EnvConfig(), False).only
    assert (result.episodes, result.successes, result.refused) == (2, 0, 2)
    assert "standard deviations" in result.per_episode[0]["refused"]
    assert "2 ended failed on a refused observation" in result.summary()


# --- [7] bounded checkpoint reading, [8] fields checked against the schema ----------------------------------

def test_a_zip_bomb_is_refused_before_it_is_inflated(tmp_path):
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\0" * (64 * 1024 * 1024))  # 64 MB of zeros in ~64 KB
    assert bomb.stat().st_size < 1024 * 1024
    with pytest.raises(CheckpointError, match="compressed members, which torch.save never writes"):
        read_checkpoint(bomb)


def test_directories_and_symlink_loops_are_named_as_such(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        read_checkpoint(tmp_path)
    (tmp_path / "loop.pt").symlink_to(tmp_path / "loop.pt")
    with pytest.raises(CheckpointError, match="cannot be read: Too many levels of symbolic links"):
        read_checkpoint(tmp_path / "loop.pt")


def _broken(payload, change):
    payload = {**payload, "env": dict(payload["env"]), "model_config": dict(payload["model_config"])}
    change(payload)
    return payload


MALFORMED = {
    "missing image_size": (lambda p: p["env"].pop("image_size"), "env lacks image_size"),
    # issue 23: with no observation either, this read as a 'full' checkpoint whose state_dim does not fit
    "missing image_size and observation": (lambda p: [p["env"].pop(k) for k in ("image_size", "observation")],
                                           r"env lacks image_size \(the size of the images it was trained on\)"),
    "missing observation": (lambda p: p["env"].pop("observation"),
                            "state_dim 4 does not fit the 'full' protocol .39 numbers.: env lacks observation"),
    "image_size as text": (lambda p: p["env"].update(image_size="32"), "env.image_size must be an integer"),
    "state_dim as text": (lambda p: p.update(state_dim="4"), "state_dim must be an integer"),
    "state_dim -1": (lambda p: p.update(state_dim=-1), "state_dim must be an integer in 1..4096"),
    "vocabulary without <pad>": (lambda p: p.update(vocab=["push", "puck"]), "vocab must be a list of words"),
    "bogus prediction_type": (lambda p: p["model_config"].update(prediction_type="x0"), "prediction_type must be"),
    "huge d_model": (lambda p: p["model_config"].update(d_model=10**9), "d_model must be in 1..4096"),
    "horizon as a list": (lambda p: p["model_config"].update(horizon=[8]), "horizon: expected int"),
    "env as a string": (lambda p: p.update(env="push-v3"), "env must be a mapping"),
    "unknown protocol": (lambda p: p["env"].update(observation="lidar"), "env.observation must be one of"),
    "state_dict of strings": (lambda p: p.update(state_dict={"w": "x"}), "state_dict must be a mapping"),
    "a camera twice": (lambda p: p["env"].update(extra_cameras=["gripperPOV", "gripperPOV"]),
                       "env.extra_cameras must be a list of at most 7 distinct camera names"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_checkpoints_are_refused_by_field(tmp_path, name):
    save_checkpoint(tmp_path / "good.pt", tiny_policy(), ENV)
    change, message = MALFORMED[name]
    torch.save(_broken(torch.load(tmp_path / "good.pt", weights_only=True), change), tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=message):
        load_policy(tmp_path / "bad.pt")
    result = minivla("eval", "--checkpoint", tmp_path / "bad.pt", "--episodes", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: checkpoint")


def test_eval_of_weights_that_give_non_finite_actions_ends_with_one_error_line(tmp_path):
    """Weights scaled by 1e30 are finite (the checkpoint loads) but every action they sample is NaN: that is the
    checkpoint's fault, not an episode's, so `minivla eval` stops with one `error:` line and exit 2 (issue 23: a
    traceback, exit 1), classic and timed alike. The policy node holds on it as on any action it must not send."""
    policy = tiny_policy()
    with torch.no_grad():
        for weights in policy.parameters():
            weights.mul_(1e30)
    save_checkpoint(tmp_path / "huge.pt", policy, ENV)
    for timing in ([], ["--latency", "0.05"]):
        result = minivla("eval", "--checkpoint", tmp_path / "huge.pt", "--episodes", "1", *timing)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: checkpoint") and "weights produce non-finite actions" in last, last


# --- [11] instructions -----------------------------------------------------------------------------------------

def test_instructions_with_control_characters_are_refused():
    assert check_instruction("push the puck\tto the goal")
    for text in ("push\x00 the puck", "push \x1b[2J the puck", "x" * 1001):
        with pytest.raises(InstructionError):
            check_instruction(text)
    result = minivla("run", "--instruction", "push\x01 the puck", "--episodes", "1")
    assert result.returncode == 2 and "control characters" in result.stderr, result.stderr


def test_a_dataset_that_names_its_extra_cameras_wrongly_is_refused(tmp_path):
    with DatasetWriter(tmp_path / "d", 8, 4, 4, "proprio") as writer:
        writer.append(np.zeros((2, 8, 8, 3)), np.zeros((2, 4)), np.zeros((2, 4)), task="push-v3", instruction="x")
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    for extra in ("gripperPOV", ["gripper POV"], ["a", "a"], [f"c{i}" for i in range(8)]):
        (tmp_path / "d" / "meta.json").write_text(json.dumps({**meta, "extra_cameras": extra}))
        with pytest.raises(DatasetError, match="extra_cameras must be a list of distinct camera names"):
            load_episodes(tmp_path / "d")


def test_dataset_index_lines_of_the_wrong_shape_are_named(tmp_path):
    with DatasetWriter(tmp_path / "d", 8, 4, 4, "proprio") as writer:
        writer.append(np.zeros((2, 8, 8, 3)), np.zeros((2, 4)), np.zeros((2, 4)), task="push-v3", instruction="x")
    with open(tmp_path / "d" / "episodes.jsonl", "a") as index:
        index.write(json.dumps({"file": "episodes/000001.npz", "steps": "two"}) + "\n")
    with pytest.raises(DatasetError, match="line 2 is not an episode entry"):
        load_episodes(tmp_path / "d")
