"""Checkpoints: plain tensors, numbers and strings only, loaded with torch.load(weights_only=True).

A checkpoint is untrusted input. weights_only=True refuses any pickled object that is not a
tensor or a plain container, so a file that carries code is rejected instead of executed.

Contents (a dict):
    format, version        "minivla-checkpoint", 1
    model_config           ModelConfig as a dict
    env                    what the policy was trained for: {"task", "tasks", "observation" ("proprio" or
                           "full"), "camera", "camera_position", "image_size"}
    state_dim, action_dim  sizes the policy expects
    vocab                  the tokenizer's word list
    state_dict             the (EMA) weights, including the state and action normalisers
    info                   free-form numbers about the run (epochs, losses, dataset size ...)
    training               (last.pt only) raw weights, optimiser, scheduler, history for --resume
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from pathlib import Path

import torch

from minivla_core.config import ModelConfig, _build
from minivla_core.config import observation_label
from minivla_core.errors import CheckpointError, ConfigError
from minivla_core.model.policy import VLAPolicy

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


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict, after checking it is a safe, well-formed minivla checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut-off one loses its directory
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: not a complete torch archive")
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
    # written before these were recorded: Meta-World's 39-number state, the scene's own camera placement
    payload["env"] = {"observation": "full", "camera_position": [], **payload["env"]}
    return payload


def policy_from_payload(payload: dict, path: str | Path = "checkpoint") -> VLAPolicy:
    try:
        # checkpoints written before stemming and the keypoint encoder existed: plain words, TinyCNN
        config = _build(ModelConfig, {"stem_words": False, "image_encoder": "flatten", **payload["model_config"]},
                        "model_config")
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    try:
        policy = VLAPolicy(config, payload["vocab"], payload["state_dim"], payload["action_dim"],
                           payload["env"]["image_size"])
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    try:
        policy.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} weights do not fit its own config: {str(exc).splitlines()[0]}") from exc
    return policy.eval()


def check_observation_matches(payload: dict, observation: str, path: str | Path, where: str) -> None:
    """A policy trained on one observation protocol must not be run on another."""
    trained = payload["env"]["observation"]
    if trained != observation:
        raise CheckpointError(f"checkpoint {path} was trained on {observation_label(trained)} observations, but "
                              f"{where} is {observation_label(observation)}; set env.observation to {trained!r} "
                              f"to run it as it was trained")


def load_policy(path: str | Path, state_dim: int | None = None, action_dim: int | None = None) -> tuple[VLAPolicy, dict]:
    """Load a policy for inference; optionally check it fits an environment's state/action sizes."""
    payload = read_checkpoint(path)
    for name, expected in (("state", state_dim), ("action", action_dim)):
        have = payload[f"{name}_dim"]
        if expected is not None and have != expected:
            raise CheckpointError(f"checkpoint {path} expects a {name} of size {have}, "
                                  f"but the environment has {expected}")
    return policy_from_payload(payload, path), payload
