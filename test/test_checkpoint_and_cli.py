"""Checkpoints (round trip, untrusted files) and the `minivla` command's errors, end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from minivla_test_utils import ROOT, tiny_model_config
from minivla_core.checkpoint import load_policy, save_checkpoint
from minivla_core.errors import CheckpointError
from minivla_core.model.policy import PolicyRunner, VLAPolicy
from minivla_core.model.tokenizer import WordTokenizer


def minivla(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "minivla", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def save_tiny(path, state_dim=4, action_dim=4, observation="proprio"):
    vocab = WordTokenizer.from_texts(["push the puck to the goal"]).vocab
    policy = VLAPolicy(tiny_model_config(), vocab, state_dim, action_dim, image_size=32)
    policy.state_normalizer.fit(torch.randn(100, state_dim))
    policy.action_normalizer.fit(torch.rand(100, action_dim) * 2 - 1)
    save_checkpoint(path, policy, {"task": "push-v3", "observation": observation, "camera": "corner2",
                                   "camera_position": [0.75, 0.075, 0.7], "image_size": 32})
    return policy


class CodeInPickle:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_round_trip_gives_identical_actions(tmp_path):
    policy = save_tiny(tmp_path / "c.pt").eval()
    loaded, payload = load_policy(tmp_path / "c.pt", state_dim=4, action_dim=4)
    assert payload["vocab"] == policy.tokenizer.vocab and loaded.config == policy.config
    assert payload["env"]["observation"] == "proprio"
    image = np.random.default_rng(0).integers(0, 255, (1, 32, 32, 3), dtype=np.uint8)
    state = np.random.default_rng(1).normal(size=4).astype(np.float32)
    a = PolicyRunner(policy, "push the puck", seed=7).sample_chunk(image, state)
    b = PolicyRunner(loaded, "push the puck", seed=7).sample_chunk(image, state)
    np.testing.assert_array_equal(a, b)
    for name in ("scale", "offset"):
        torch.testing.assert_close(getattr(loaded.action_normalizer, name), getattr(policy.action_normalizer, name))


def test_checkpoints_from_before_stemming_keep_their_plain_words(tmp_path):
    save_tiny(tmp_path / "c.pt")
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    del payload["model_config"]["stem_words"]
    torch.save(payload, tmp_path / "old.pt")
    old, _ = load_policy(tmp_path / "old.pt")
    assert old.config.stem_words is False and old.tokenizer.stem is False
    assert load_policy(tmp_path / "c.pt")[0].tokenizer.stem is True


def test_checkpoints_from_before_the_observation_protocol_read_as_privileged_state(tmp_path):
    """They were trained on Meta-World's 39 numbers with the scene's own camera placement and TinyCNN."""
    from minivla_core.config import ModelConfig
    from dataclasses import asdict

    vocab = WordTokenizer.from_texts(["push the puck to the goal"]).vocab
    config = ModelConfig(**{**asdict(tiny_model_config()), "image_encoder": "flatten"})
    save_checkpoint(tmp_path / "c.pt", VLAPolicy(config, vocab, 39, 4, 32), {"task": "push-v3", "image_size": 32})
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    del payload["model_config"]["image_encoder"], payload["model_config"]["keypoints"]
    torch.save(payload, tmp_path / "old.pt")
    policy, payload = load_policy(tmp_path / "old.pt")
    assert payload["env"]["observation"] == "full" and payload["env"]["camera_position"] == []
    assert policy.config.image_encoder == "flatten"


def test_untrusted_checkpoints_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": "minivla-checkpoint", "payload": CodeInPickle(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="pickled code"):
        load_policy(tmp_path / "evil.pt")
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="does not exist"):
        load_policy(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_policy(tmp_path / "garbage.pt")
    save_tiny(tmp_path / "good.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:20000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_policy(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a minivla checkpoint"):
        load_policy(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="expects a state of size 4, but the environment has 12"):
        load_policy(tmp_path / "good.pt", state_dim=12)


def test_cli_errors_are_one_line_and_exit_2(tmp_path, two_episode_dataset):
    save_tiny(tmp_path / "small_state.pt", state_dim=10)
    save_tiny(tmp_path / "good.pt")
    save_tiny(tmp_path / "privileged.pt", state_dim=39, observation="full")
    marker = tmp_path / "pwned"
    torch.save({"x": CodeInPickle(marker)}, tmp_path / "evil.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a zip file at all")
    truncated = tmp_path / "truncated"
    subprocess.run(["cp", "-r", str(two_episode_dataset), str(truncated)], check=True)
    episode = truncated / "episodes" / "000001.npz"
    episode.write_bytes(episode.read_bytes()[:500])
    cases = [
        (["eval", "--checkpoint", tmp_path / "missing.pt"], "checkpoint .*missing.pt does not exist"),
        (["eval", "--checkpoint", tmp_path / "corrupt.pt"], "corrupt or truncated"),
        (["eval", "--checkpoint", tmp_path / "evil.pt"], "pickled code"),
        (["eval", "--checkpoint", tmp_path / "small_state.pt"], r"state_dim 10 does not fit the 'proprio' protocol"),
        (["eval", "--checkpoint", tmp_path / "privileged.pt"],
         r"trained on full \(privileged state\) observations, but env.observation is proprio"),
        (["eval", "--checkpoint", tmp_path / "good.pt", "--observation", "full"],
         r"trained on proprio observations, but env.observation is full \(privileged state\)"),
        (["train", "--dataset", two_episode_dataset, "--out", tmp_path / "run", "--image-size", "32",
          "--observation", "full"],
         r"holds proprio states but env.observation is 'full'"),
        (["collect", "--task", "push-v9", "--out", tmp_path / "x"], "unknown Meta-World task 'push-v9'"),
        (["train", "--dataset", tmp_path / "nowhere", "--out", tmp_path / "run"], "dataset .*nowhere does not exist"),
        (["train", "--dataset", truncated, "--out", tmp_path / "run", "--image-size", "32"],
         "000001.npz is unreadable or truncated"),
        (["eval", "--checkpoint", tmp_path / "good.pt", "--instruction", "  "], "is empty"),
        (["run", "--set", "bridge.timing=free"], "bridge.timing 'free' differs from run.timing 'lockstep'"),
    ]
    for args, message in cases:
        result = minivla(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: "), result.stderr
        assert __import__("re").search(message, last), (message, last)
    assert not marker.exists()


def test_end_to_end_collect_train_eval(tmp_path, tiny_checkpoint):
    """Two real episodes on disk -> a few training steps -> one closed-loop episode in MuJoCo."""
    run = tiny_checkpoint.parent
    for name in ("best.pt", "last.pt", "loss.png", "history.json"):
        assert (run / name).is_file(), name
    history = json.loads((run / "history.json").read_text())
    assert len(history["train_loss"]) == 2 and all(np.isfinite(history["train_loss"]))
    out = tmp_path / "eval.json"
    result = minivla("eval", "--checkpoint", tiny_checkpoint, "--episodes", "1", "--max-episode-steps", "20",
                     "--json", out, "--video-dir", tmp_path / "videos")
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    for key in ("success_rate", "episodes", "successes", "mean_steps_to_success", "task", "checkpoint"):
        assert key in data
    assert data["observation"] == "proprio" and data["image_ablation"] == "none"
    assert data["episodes"] == 1 and data["task"] == "push-v3"
    assert data["successes"] == sum(e["success"] for e in data["per_episode"])
    assert data["success_rate"] == data["successes"] / data["episodes"]
    assert data["per_episode"][0]["steps"] <= 20
    videos = list((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000


def test_too_few_episodes_for_validation_choose_best_on_training_loss_and_say_so(tmp_path, two_episode_dataset,
                                                                                 tiny_checkpoint):
    """Two episodes at train.val_fraction 0.1 leave none for validation: `train` printed "val nan" and "best validation
    loss inf", wrote NaN into history.json (not JSON) and kept whichever epoch came last. Now best.pt is the epoch of
    the lowest training loss, and the output, history.json and the checkpoint's info say so."""
    import dataclasses
    import re

    import yaml

    from minivla_core.checkpoint import read_checkpoint

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"model": dataclasses.asdict(tiny_model_config()), "train": {"warmup_steps": 2}}))
    run = tmp_path / "run"
    result = minivla("train", "--config", config, "--dataset", two_episode_dataset, "--out", run, "--image-size", "32",
                     "--epochs", "3", "--batch-size", "16")
    assert result.returncode == 0, result.stderr
    assert not re.search(r"\b(nan|inf)\b", result.stdout, re.IGNORECASE), result.stdout
    assert "note: 2 episodes leave none for validation at train.val_fraction 0.1 (a validation split needs 6 or more)" \
        in result.stdout, result.stdout

    def refuse(constant):
        raise ValueError(f"history.json holds {constant}, which is not JSON")

    history = json.loads((run / "history.json").read_text(), parse_constant=refuse)
    assert history["val_loss"] == [None, None, None] and history["best_chosen_on"] == "training loss"
    assert "none for validation" in history["note"]
    best_epoch = int(np.argmin(history["train_loss"])) + 1
    info = read_checkpoint(run / "best.pt")["info"]
    assert info["epoch"] == best_epoch and info["best_chosen_on"] == "training loss" and info["val_loss"] is None
    assert f"best.pt: epoch {best_epoch}, training loss {min(history['train_loss']):.4f}" in result.stdout
    # With validation episodes (the fixture holds out one of two), best.pt is chosen on the validation loss.
    validated = json.loads((tiny_checkpoint.parent / "history.json").read_text(), parse_constant=refuse)
    assert validated["best_chosen_on"] == "validation loss" and all(np.isfinite(validated["val_loss"]))
    assert validated["note"] == ""


def test_resume_continues_the_epoch_count(tmp_path, two_episode_dataset, tiny_checkpoint):
    from minivla_core.config import Config, EnvConfig
    from minivla_core.train import train

    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(tiny_checkpoint.parent), str(run)], check=True)
    config = Config(env=EnvConfig(image_size=32), model=tiny_model_config())
    config.train.dataset, config.train.out_dir = str(two_episode_dataset), str(run)
    config.train.epochs, config.train.batch_size, config.train.warmup_steps, config.train.val_fraction = 3, 16, 2, 0.5
    result = train(config, resume=str(run / "last.pt"), progress=False)
    assert len(result["history"]["train_loss"]) == 3
    assert result["history"]["train_loss"][:2] == json.loads(
        (tiny_checkpoint.parent / "history.json").read_text())["train_loss"]


def test_a_run_interrupted_after_an_epoch_and_resumed_trains_what_an_uninterrupted_run_trains(
        tmp_path, two_episode_dataset, monkeypatch):
    """last.pt keeps the random stream with the weights, optimiser and schedule: resuming (another session, say)
    gives the same epochs, not new random draws."""
    import minivla_core.train as training
    from minivla_core.checkpoint import read_checkpoint
    from minivla_core.config import Config, EnvConfig

    def config(out):
        config = Config(env=EnvConfig(image_size=32), model=tiny_model_config())
        config.train.dataset, config.train.out_dir = str(two_episode_dataset), str(out)
        config.train.epochs, config.train.batch_size, config.train.warmup_steps = 3, 16, 2
        config.train.val_fraction, config.train.image_shift, config.train.word_dropout = 0.5, 2, 0.2
        return config

    saved, kept = training.save_checkpoint, tmp_path / "after_epoch_1.pt"

    def save_and_keep_the_first_last_pt(path, *args, **kwargs):  # what a run stopped after epoch 1 left on disk
        saved(path, *args, **kwargs)
        if path.name == "last.pt" and not kept.exists():
            subprocess.run(["cp", str(path), str(kept)], check=True)

    monkeypatch.setattr(training, "save_checkpoint", save_and_keep_the_first_last_pt)
    straight = training.train(config(tmp_path / "straight"), progress=False)
    monkeypatch.setattr(training, "save_checkpoint", saved)
    resumed = training.train(config(tmp_path / "resumed"), resume=str(kept), progress=False)
    assert resumed["history"]["train_loss"] == straight["history"]["train_loss"]
    one = read_checkpoint(tmp_path / "straight" / "last.pt")["training"]["model"]
    two = read_checkpoint(tmp_path / "resumed" / "last.pt")["training"]["model"]
    assert all(torch.equal(one[name], two[name]) for name in one)


def test_eval_over_several_tasks_writes_a_per_task_table(tmp_path, tiny_checkpoint):
    out = tmp_path / "multi.json"
    result = minivla("eval", "--checkpoint", tiny_checkpoint, "--tasks", "push-v3", "reach-v3", "--episodes", "1",
                     "--max-episode-steps", "5", "--instructions", "held_out", "--json", out)
    assert result.returncode == 0, result.stderr
    assert "average" in result.stdout and "reach-v3" in result.stdout
    data = json.loads(out.read_text())
    assert set(data["per_task"]) == {"push-v3", "reach-v3"} and data["episodes"] == 2
    rates = [data["per_task"][t]["success_rate"] for t in data["per_task"]]
    assert data["success_rate"] == pytest.approx(sum(rates) / 2)
    from minivla_core.envs.metaworld_env import paraphrases

    assert data["per_task"]["reach-v3"]["per_episode"][0]["instruction"] in paraphrases("reach-v3", held_out=True)


def test_other_task_instructions_name_another_task():
    from minivla_core.evaluate import eval_instructions
    from minivla_core.envs.metaworld_env import instruction_for

    tasks = ["push-v3", "reach-v3", "door-open-v3"]
    for task in tasks:
        (other,) = eval_instructions(task, "other_task", tasks)
        assert other != instruction_for(task) and other in [instruction_for(t) for t in tasks]
    assert eval_instructions("push-v3", "plain", tasks) == ["push the puck to the goal"]


def test_every_command_reads_the_one_schema_from_config_set_and_flags(tmp_path):
    """--config, then --set section.field=value, then named flags; run, record and bag2data included."""
    from minivla import commands as all_commands
    from minivla_core.cli import build_parser
    from minivla_core.config import field_docs

    commands = all_commands()
    parser, docs = build_parser(commands), field_docs()
    for name, command in commands.items():
        help_text = parser._subparsers._group_actions[0].choices[name].format_help()
        assert "--config" in help_text and "--set" in help_text, name
        for path in command.shortcuts.values():  # each flag's help is its field's comment in config.py, or what
            doc = command.field_help.get(path, docs[path])  # this command does with the field where that differs
            assert path in help_text and doc.split()[0] in help_text, (name, path)

    config = tmp_path / "c.yaml"
    config.write_text("eval:\n  checkpoint: checkpoints/multitask.pt\n")
    assert "gripperPOV" in minivla("info", "--config", config).stdout
    assert "gripperPOV" not in minivla("info", "--config", config, "--set", "eval.checkpoint=checkpoints/push_v3.pt",
                                       ).stdout.split("\n")[0]
    assert "gripperPOV" in minivla("info", "--set", "eval.checkpoint=checkpoints/push_v3.pt", "--checkpoint",
                                   "checkpoints/multitask.pt").stdout.split("\n")[0]  # the named flag comes last

    for args, message in [
        (("info", "--set", "eval.chekpoint=x.pt"), "unknown config field 'eval.chekpoint'"),
        (("info", "--set", "eval.checkpoint"), "expected SECTION.FIELD=VALUE"),
        (("train", "--set", "train.epochs=many"), "train.epochs: expected int"),
    ]:
        result = minivla(*args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)

    # The ROS commands take --config too, and check what they read before starting any node.
    config.write_text("env:\n  task: push-v9\n")
    result = minivla("run", "--config", config)
    assert result.returncode == 2 and "push-v9" in result.stderr.strip().splitlines()[-1], result.stderr
    (tmp_path / "taken").mkdir()
    config.write_text(f"recorder:\n  out: {tmp_path / 'taken'}\n")
    result = minivla("record", "--config", config)
    assert result.returncode == 2 and "already exists" in result.stderr, result.stderr
    config.write_text(f"bag2data:\n  bags: [{tmp_path / 'no-such-bag'}]\n  out: {tmp_path / 'data'}\n")
    result = minivla("bag2data", "--config", config)
    assert result.returncode == 2 and "no-such-bag does not exist" in result.stderr, result.stderr
