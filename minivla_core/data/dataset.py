"""The on-disk dataset: a folder of episodes, appended one at a time.

    DATASET/
      meta.json          {"format": "minivla-dataset", "version": 1,
                          "image_size": 64, "state_dim": 4, "action_dim": 4,
                          "observation": "proprio",
                          "camera": {"name": "corner2", "position": [0.75, 0.075, 0.7]},
                          "extra_cameras": ["gripperPOV"]}
      episodes.jsonl     one JSON object per episode, in the order they were written:
                         {"file": "episodes/000000.npz", "task": "push-v3",
                          "instruction": "push the puck to the goal", "steps": 61,
                          "success": true, "source": "collect", "seed": 0, "episode": 0}
      episodes/000000.npz
                         images  (T, H, W, 3) uint8   upright camera image before step t
                         images_gripperPOV (T, H, W, 3)  the same from each extra camera, if any
                         states  (T, S)       float32 the policy's state before step t: S = 4 for
                                              "proprio" (hand xyz, gripper), 39 for "full"
                         actions (T, A)       float32 action taken at step t, in [-1, 1]: A = 4 for the
                                              simulated arms (hand velocity xyz, gripper), a robot's
                                              own command size otherwise (3: a twist, no gripper)

An episode file is written under a temporary name and renamed, then its line is appended to
episodes.jsonl, so a crash loses at most the episode being written. One writer at a time: a
second DatasetWriter on the same folder is refused while the first holds `.lock`. Readers trust
only the index: a listed file that is missing, unreadable, or holds a non-finite number or an
action outside [-1, 1] is an error naming the file, both when it is written and when it is read.
Anything that produces demonstrations (scripted collection, converted rosbags) appends here.
`observation` says what the states are (envs/metaworld_env.py); datasets written before it
existed hold Meta-World's full 39-number state and read as "full". `camera` is informational
(bags from other robots may not know it); `extra_cameras` (none if absent) says which images each
episode file holds besides the scene camera's. In memory an episode's images are one array,
(T, cameras, H, W, 3), scene camera first.
"""

from __future__ import annotations

import fcntl
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minivla_core.actions import ACTION_LIMIT, outside_limits
from minivla_core.config import valid_extra_cameras
from minivla_core.errors import DatasetError

FORMAT = "minivla-dataset"
VERSION = 1


@dataclass
class Episode:
    images: np.ndarray  # (T, cameras, H, W, 3)
    states: np.ndarray
    actions: np.ndarray
    task: str
    instruction: str


def check_values(states: np.ndarray, actions: np.ndarray, where: str) -> None:
    """DatasetError naming `where` and the first bad step if a state or action is not finite, or an
    action lies outside [-ACTION_LIMIT, ACTION_LIMIT]: one NaN would turn every weight trained on it into NaN."""
    for name, values in (("state", states), ("action", actions)):
        bad = ~np.isfinite(values)
        if bad.any():
            step = int(np.argwhere(bad)[0][0])
            raise DatasetError(f"{where}: the {name} at step {step} is not finite ({values[step].tolist()})")
    outside = outside_limits(actions)
    if outside.any():
        step = int(np.argwhere(outside)[0][0])
        raise DatasetError(f"{where}: the action at step {step} is outside [-{ACTION_LIMIT:g}, {ACTION_LIMIT:g}] "
                           f"({actions[step].tolist()})")


class DatasetWriter:
    """Appends episodes to a dataset folder, creating it if needed. Use it as a context manager (or
    call close()): it holds the folder's lock until then."""

    def __init__(self, root: str | Path, image_size: int, state_dim: int, action_dim: int,
                 observation: str, camera: dict | None = None, extra_cameras: list[str] | None = None):
        self.root = Path(root)
        self.meta = {"format": FORMAT, "version": VERSION, "image_size": image_size,
                     "state_dim": state_dim, "action_dim": action_dim, "observation": observation,
                     "camera": camera or {}, "extra_cameras": list(extra_cameras or [])}
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.root / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise DatasetError(f"dataset {self.root} is being written by another process; wait for it to finish "
                               f"or write to another folder") from None
        meta_path = self.root / "meta.json"
        if meta_path.exists():
            existing = read_meta(self.root)
            if existing != self.meta:
                raise DatasetError(f"{self.root} holds episodes of another shape {existing}; "
                                   f"cannot append episodes shaped {self.meta}")
        else:
            (self.root / "episodes").mkdir(parents=True, exist_ok=True)
            meta_path.write_text(json.dumps(self.meta, indent=1) + "\n")
        (self.root / "episodes").mkdir(exist_ok=True)
        self.entries = read_index(self.root)
        self.count = len(self.entries)

    def close(self) -> None:
        if not self._lock.closed:
            self._lock.close()  # releases the lock

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def held(self, task: str, seed: int) -> list[dict]:
        """The entries already recorded for (task, seed)."""
        return [e for e in self.entries if e.get("task") == task and e.get("seed") == seed]

    def next_episode(self, task: str, seed: int) -> int:
        """The first layout number after every one already recorded for (task, seed): collecting again
        into the same folder continues with new layouts instead of recording the same ones twice."""
        done = [e["episode"] for e in self.held(task, seed) if isinstance(e.get("episode"), int)]
        return max(done) + 1 if done else 0

    def append(self, images, states, actions, task: str, instruction: str, **info) -> Path:
        """images (T, cameras, H, W, 3), or (T, H, W, 3) for a dataset with one camera."""
        images = np.asarray(images, dtype=np.uint8)
        states = np.asarray(states, dtype=np.float32)
        actions = np.asarray(actions, dtype=np.float32)
        size, sdim, adim = self.meta["image_size"], self.meta["state_dim"], self.meta["action_dim"]
        views = 1 + len(self.meta["extra_cameras"])
        steps = len(actions)
        if steps == 0:
            raise DatasetError("refusing to write an episode with no steps")
        if images.ndim == 4 and views == 1:
            images = images[:, None]
        if images.shape != (steps, views, size, size, 3) or states.shape != (steps, sdim) or actions.shape != (steps, adim):
            raise DatasetError(f"episode arrays have shapes images {images.shape}, states {states.shape}, "
                               f"actions {actions.shape}; expected ({steps}, {views}, {size}, {size}, 3), "
                               f"({steps}, {sdim}), ({steps}, {adim})")
        check_values(states, actions, f"episode {self.count} ({task})")
        name = f"episodes/{self.count:06d}.npz"
        tmp = self.root / (name + ".tmp.npz")
        extra = {image_key(camera): images[:, 1 + i] for i, camera in enumerate(self.meta["extra_cameras"])}
        np.savez_compressed(tmp, images=images[:, 0], states=states, actions=actions, **extra)
        os.replace(tmp, self.root / name)
        line = {"file": name, "task": task, "instruction": instruction, "steps": steps, **info}
        with open(self.root / "episodes.jsonl", "a") as index:
            index.write(json.dumps(line) + "\n")
            index.flush()
            os.fsync(index.fileno())
        self.entries.append(line)
        self.count += 1
        return self.root / name


def image_key(camera: str) -> str:
    """The array of an extra camera's images in an episode file."""
    return f"images_{camera}"


def read_json(path: Path, missing: str) -> dict:
    """The JSON object in `path`; DatasetError with `missing` if there is no such file, or naming what is wrong."""
    if not path.is_file():
        raise DatasetError(missing)
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    return value


def read_meta(root: str | Path) -> dict:
    root = Path(root)
    path = root / "meta.json"
    if not root.is_dir():
        raise DatasetError(f"dataset {root} does not exist")
    meta = read_json(path, f"{root} is not a dataset: {path.name} is missing")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DatasetError(f"{path} is not a {FORMAT} version {VERSION} file")
    meta.setdefault("observation", "full")  # written before the protocol was recorded: Meta-World's 39 numbers
    meta.setdefault("camera", {})
    meta.setdefault("extra_cameras", [])
    if not valid_extra_cameras(meta["extra_cameras"]):
        raise DatasetError(f"{path}: extra_cameras must be a list of distinct camera names, got "
                           f"{meta['extra_cameras']!r}")
    return meta


def read_index(root: str | Path) -> list[dict]:
    path = Path(root) / "episodes.jsonl"
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} line {number} is not valid JSON (truncated write?): {exc}") from exc
        if not (isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("steps"), int)
                and isinstance(entry.get("task"), str) and isinstance(entry.get("instruction"), str)):
            raise DatasetError(f"{path} line {number} is not an episode entry (file, steps, task, instruction)")
        entries.append(entry)
    return entries


def load_episodes(root: str | Path) -> tuple[dict, list[Episode]]:
    """Read a whole dataset into memory, checking every episode against meta.json."""
    root = Path(root)
    meta = read_meta(root)
    index = read_index(root)
    if not index:
        raise DatasetError(f"dataset {root} has no episodes")
    return meta, [read_episode(root, meta, entry) for entry in index]


def read_episode(root: str | Path, meta: dict, entry: dict) -> Episode:
    """One episode of the index (`entry`), checked against meta.json: one at a time for a dataset too large to hold."""
    root = Path(root)
    path = root / entry["file"]
    if not path.is_file():
        raise DatasetError(f"dataset {root} lists {entry['file']} but the file is missing")
    try:
        with np.load(path) as arrays:
            views = [arrays["images"]] + [arrays[image_key(c)] for c in meta["extra_cameras"]]
            states, actions = arrays["states"], arrays["actions"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetError(f"episode file {path} is unreadable or truncated: {exc}") from exc
    steps, size = entry["steps"], meta["image_size"]
    if any(view.shape != views[0].shape for view in views):
        raise DatasetError(f"episode file {path}: its cameras' images differ in shape "
                           f"{[view.shape for view in views]}")
    images = np.stack(views, axis=1)  # (T, cameras, H, W, 3)
    if (images.shape[:1] + images.shape[2:] != (steps, size, size, 3) or states.shape != (steps, meta["state_dim"])
            or actions.shape != (steps, meta["action_dim"])):
        raise DatasetError(f"episode file {path} has shapes {images.shape}, {states.shape}, {actions.shape}, "
                           f"which do not match its index entry ({steps} steps) and meta.json")
    if images.dtype != np.uint8 or states.dtype != np.float32 or actions.dtype != np.float32:
        raise DatasetError(f"episode file {path} has dtypes {images.dtype}, {states.dtype}, {actions.dtype}; "
                           f"expected uint8, float32, float32")
    check_values(states, actions, f"episode file {path}")
    return Episode(images, states, actions, entry["task"], entry["instruction"])
