"""Checkpoints: plain tensors, numbers and strings only, loaded with torch.load(weights_only=True).

A checkpoint is untrusted input. weights_only=True refuses any pickled object that is not a
tensor or a plain container, so a file that carries code is rejected instead of executed.

Contents (a dict):
    format, version        "minivla-checkpoint", 1
    model_config           ModelConfig as a dict
    env                    what the policy was trained for: {"task", "tasks", "observation" ("proprio" or
                           "full"), "camera", "camera_position", "extra_cameras", "image_size"}
    state_dim, action_dim  sizes the policy expects
    vocab                  the tokenizer's word list
    state_dict             the (EMA) weights, including the state and action normalisers
    info                   free-form numbers about the run (epochs, losses, dataset size ...)
    training               (last.pt only) raw weights, optimiser, scheduler, history for --resume
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import stat
import zipfile
from pathlib import Path

import torch

from minivla_core.config import (MAX_CAMERAS, OBSERVATIONS, ModelConfig, _build, check_model_config,
                                 observation_label, valid_extra_cameras)
from minivla_core.errors import CheckpointError, ConfigError
from minivla_core.model.policy import VLAPolicy
from minivla_core.model.tokenizer import PAD, UNK

FORMAT = "minivla-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, policy: VLAPolicy, env: dict, info: dict | None = None,
                    training: dict | None = None) -> None:
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": dataclasses.asdict(policy.config),
        "env": dict(env),
        "state_dim": policy.state_dim,
        "action_dim": policy.action_dim,
        "vocab": list(policy.tokenizer.vocab),
        "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
        "info": dict(info or {}),
    }
    if training is not None:
        payload["training"] = training
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


# torch.save writes an uncompressed zip of a few members. Bounding what the directory promises before anything
# is unpickled keeps a crafted file (a "zip bomb": 2 MB that inflate to gigabytes) from exhausting memory.
MAX_MEMBERS = 10_000
MAX_BYTES = 2 * 1024**3
MAX_DIM = 4096  # state and action sizes
MAX_IMAGE_SIZE = 1024
# What every checkpoint's env records (the rest have defaults for checkpoints written before they were recorded)
ENV_REQUIRED = {"task": "the task it was trained on", "image_size": "the size of the images it was trained on"}


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict, after checking it is a safe, well-formed minivla checkpoint."""
    path = Path(path)
    check_archive(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if "Unsupported global" in line), "")
        raise CheckpointError(f"checkpoint {path} holds objects other than plain weights (pickled code?); "
                              f"refusing to load it. {reason}".strip()) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {str(exc).splitlines()[0]}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a minivla checkpoint (no '{FORMAT}' marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has version {payload.get('version')}, this code reads {VERSION}")
    missing = [k for k in ("model_config", "env", "state_dim", "action_dim", "vocab", "state_dict") if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}")
    if not isinstance(payload["env"], dict):
        raise CheckpointError(f"checkpoint {path}: env must be a mapping, got {type(payload['env']).__name__}")
    missing = [k for k in ENV_REQUIRED if k not in payload["env"]]
    if missing:  # named before any check that reads them, or reads a default in their place
        raise CheckpointError(f"checkpoint {path}: env lacks {', '.join(missing)} "
                              f"({'; '.join(ENV_REQUIRED[k] for k in missing)})")
    observation_recorded = "observation" in payload["env"]
    # written before these were recorded: Meta-World's 39-number state, the scene's own camera placement, one camera
    payload["env"] = {"observation": "full", "camera_position": [], "extra_cameras": [], **payload["env"]}
    check_fields(payload, path, observation_recorded)
    return payload


def check_archive(path: Path) -> None:
    """CheckpointError unless `path` is a file whose zip directory looks like torch.save's output."""
    try:
        mode = path.stat().st_mode  # follows symlinks; a loop or a dangling link raises OSError
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file")
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"checkpoint {path} is not a regular file")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):  # a cut-off torch archive loses its directory
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: not a complete torch archive") from None
    if len(members) > MAX_MEMBERS:
        raise CheckpointError(f"checkpoint {path} has {len(members)} archive members (limit {MAX_MEMBERS}): not a "
                              f"torch checkpoint")
    if any(m.compress_type != zipfile.ZIP_STORED for m in members):
        raise CheckpointError(f"checkpoint {path} has compressed members, which torch.save never writes: refusing "
                              f"to inflate it")
    total = sum(m.file_size for m in members)
    if total > MAX_BYTES:
        raise CheckpointError(f"checkpoint {path} would unpack to {total / 1024**3:.1f} GiB (limit "
                              f"{MAX_BYTES / 1024**3:.0f} GiB)")


def check_fields(payload: dict, path: Path, observation_recorded: bool = True) -> None:
    """CheckpointError naming the first field that does not fit the schema in this module's docstring
    (`observation_recorded` False: env.observation is the default of checkpoints written before it was recorded)."""
    def bad(field: str, expected: str):
        return CheckpointError(f"checkpoint {path}: {field} must be {expected}, got {short(payload, field)}")

    for name in ("state_dim", "action_dim"):
        value = payload[name]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_DIM:
            raise bad(name, f"an integer in 1..{MAX_DIM}")
    env = payload["env"]
    if not isinstance(env.get("task"), str):
        raise bad("env.task", "a task name")
    if env["observation"] not in OBSERVATIONS:
        raise bad("env.observation", f"one of {sorted(OBSERVATIONS)}")
    if OBSERVATIONS[env["observation"]] not in (None, payload["state_dim"]):
        recorded = "" if observation_recorded else (": env lacks observation, and a checkpoint that records none is "
                                                    "read as one written before protocols were recorded, which held "
                                                    "the full state")
        raise CheckpointError(f"checkpoint {path}: state_dim {payload['state_dim']} does not fit the "
                              f"{env['observation']!r} protocol ({OBSERVATIONS[env['observation']]} numbers){recorded}")
    size = env.get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= MAX_IMAGE_SIZE:
        raise bad("env.image_size", f"an integer in 8..{MAX_IMAGE_SIZE}")
    if not isinstance(env.get("camera", ""), str):
        raise bad("env.camera", "a camera name")
    position = env["camera_position"]
    if not (isinstance(position, list) and len(position) in (0, 3)
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in position)):
        raise bad("env.camera_position", "3 finite numbers or empty")
    if not valid_extra_cameras(env["extra_cameras"]):
        raise bad("env.extra_cameras", f"a list of at most {MAX_CAMERAS - 1} distinct camera names")
    vocab = payload["vocab"]
    if not (isinstance(vocab, list) and all(isinstance(w, str) for w in vocab) and vocab[:2] == [PAD, UNK]):
        raise bad("vocab", f"a list of words starting with {PAD!r}, {UNK!r}")
    weights = payload["state_dict"]
    if not (isinstance(weights, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in weights.items())):
        raise bad("state_dict", "a mapping of names to tensors")
    broken = [name for name, tensor in weights.items()
              if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if broken:
        raise CheckpointError(f"checkpoint {path} has NaN or infinite weights in {', '.join(broken[:3])}"
                              f"{' and more' if len(broken) > 3 else ''} (a diverged training run?)")


def short(payload: dict, field: str) -> str:
    value = payload
    for key in field.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def policy_from_payload(payload: dict, path: str | Path = "checkpoint") -> VLAPolicy:
    try:
        # checkpoints written before stemming and the keypoint encoder existed: plain words, TinyCNN
        config = _build(ModelConfig, {"stem_words": False, "image_encoder": "flatten", **payload["model_config"]},
                        "model_config")
        check_model_config(config, "model_config")
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    try:
        policy = VLAPolicy(config, payload["vocab"], payload["state_dim"], payload["action_dim"],
                           payload["env"]["image_size"], cameras=1 + len(payload["env"]["extra_cameras"]))
    except (ConfigError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    try:
        policy.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} weights do not fit its own config: "
                              f"{str(exc).splitlines()[0]}") from exc
    return policy.eval()


def check_observation_matches(payload: dict, observation: str, path: str | Path, where: str) -> None:
    """A policy trained on one observation protocol must not be run on another."""
    trained = payload["env"]["observation"]
    if trained != observation:
        raise CheckpointError(f"checkpoint {path} was trained on {observation_label(trained)} observations, but "
                              f"{where} is {observation_label(observation)}; set env.observation to {trained!r} "
                              f"to run it as it was trained")


def trained_tasks(env: dict) -> list[str]:
    """The tasks a checkpoint's env record says it was trained on (`tasks`, or the one `task`)."""
    return list(env.get("tasks") or [env["task"]])


def untrained_task_warning(path: str | Path, env: dict, task: str, where: str) -> str | None:
    """A warning naming both, when `task` (the one a graph will command, as setting `where` gives it) is not one
    the checkpoint at `path` was trained on (its env record, `env`); None when it is. The policy would still run,
    and command a robot or a task it has never seen: the bundled push-v3 checkpoint on the Fetch scene, say."""
    tasks = trained_tasks(env)
    if task in tasks:
        return None
    return (f"warning: checkpoint {path} was trained on {_with_robot(tasks)}, but {where} is {_with_robot([task])}: "
            f"the policy will command a task it was never trained on (set policy_node.checkpoint to one that was)")


def _with_robot(tasks: list[str]) -> str:
    """Task names, each with the simulated robot that runs it where one does: "push-v3 (Meta-World's Sawyer arm)"."""
    from minivla_core.envs import TASKS
    from minivla_core.errors import TaskError

    def named(task: str) -> str:
        try:
            return f"{task} ({TASKS.lookup(task).robot})"
        except TaskError:
            return task  # a real robot's task (bag2data.task), which no simulator runs

    return ", ".join(named(task) for task in tasks)


def load_policy(path: str | Path, state_dim: int | None = None,
                action_dim: int | None = None) -> tuple[VLAPolicy, dict]:
    """Load a policy for inference; optionally check it fits an environment's state/action sizes."""
    payload = read_checkpoint(path)
    for name, expected in (("state", state_dim), ("action", action_dim)):
        have = payload[f"{name}_dim"]
        if expected is not None and have != expected:
            raise CheckpointError(f"checkpoint {path} expects a {name} of size {have}, "
                                  f"but the environment has {expected}")
    return policy_from_payload(payload, path), payload
