"""Our datasets to and from LeRobot dataset v3.0, the format LeRobot and its hub speak.

    OUT/                                    (what export_lerobot writes; import_lerobot reads the same layout)
      meta/info.json                        codebase_version "v3.0", fps, features (dtype, shape, names), totals,
                                            splits, the chunk/file path templates
      meta/stats.json                       min, max, mean, std, count, q01..q99 of every feature
      meta/tasks.parquet                    task (the natural-language instruction) -> task_index
      meta/episodes/chunk-000/file-000.parquet
                                            one row per episode: its tasks, length, which data file holds it and
                                            where (dataset_from_index, dataset_to_index), its own stats/...
      meta/minivla.json                     what LeRobot has no place for (below); LeRobot ignores the file
      data/chunk-000/file-000.parquet       one row per frame, one row group per episode: the features below and
                                            timestamp, frame_index, episode_index, index, task_index

What maps to what:
    scene camera's images   "observation.image"           image feature: PNG bytes in the data parquet, as
    extra camera X's images "observation.images.X"        LeRobot stores image features (lossless)
    states (T, S)           "observation.state"           float32 (S,); S = 4 for "proprio" (LeRobot's agent_pos)
    actions (T, A)          "action"                      float32 (A,); A is the dataset's (3 or 4 for our robots)
    instruction             the episode's task            LeRobot's tasks are natural language
    step t                  frame_index t, timestamp t / fps; index counts frames over the whole dataset

What this module decides:
- Export writes image features, not mp4 videos: PNG keeps every pixel, so our dataset -> v3 -> our dataset is
  identical. Import reads both: images from the data parquet, and video features (LeRobot's default for
  recordings, AV1) decoded by OpenCV, each episode's frames found from its videos/KEY/from_timestamp and its frames'
  timestamps. Video is lossy: such images are close to, not equal to, what the camera saw.
- meta/minivla.json carries our meta.json and each episode's index entry (task name, source, seed, success, ...).
  Import uses it only when it still matches the episodes (same count and lengths); otherwise, and for any other
  v3.0 dataset (a user's recordings, LeRobot's metaworld_mt50), it maps: the instruction and (unless --task names
  one) the task name are the LeRobot task string; the scene camera is "observation.image", else the first image
  feature, and the other image features become extra cameras; states are "proprio" for a robot_type "metaworld"
  dataset of 4-number states (metaworld_mt50's agent_pos), "full" for 39 numbers, else "robot"; an episode's
  success is whether any "next.success" is true, where that feature exists. Other features are left out, and said.
- fps: our datasets do not record it. Export takes the one given, else the one every episode says (imported ones
  do), else 80 for Meta-World tasks (its simulation steps 80 times a second; LeRobot's Meta-World fps).
- Images of another size or not square: given an image size, import crops the centred square and resizes it; without
  one, the images must already be square and keep their size.
- Refused, with the file and field named: another codebase_version, a missing feature or file, a shape or dtype
  that does not fit, a frame count that disagrees with the episode's length, a video that ends early, an action
  outside [-1, 1] (our policy's actions are normalised commands) and images stored as separate files.
- Export writes into OUT.partial and renames it to OUT at the end: a failure leaves no half dataset named OUT. Data
  files roll over at 100 MB and chunks at 1000 files, as LeRobot's writer does; memory holds one episode at a time.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from minivla_core.actions import ACTION_LIMIT
from minivla_core.config import OBSERVATIONS, state_dim_of
from minivla_core.data.dataset import DatasetWriter, check_values, read_episode, read_index, read_json, read_meta
from minivla_core.errors import DatasetError

CODEBASE_VERSION = "v3.0"
SCENE_IMAGE = "observation.image"
EXTRA_IMAGE_PREFIX = "observation.images."
STATE, ACTION = "observation.state", "action"
SUCCESS = "next.success"  # LeRobot's per-frame success flag: import reads an episode's success from it
CHUNKS_SIZE = 1000  # data files per chunk folder
DATA_FILES_SIZE_MB = 100  # a data file is closed once it holds this much
VIDEO_FILES_SIZE_MB = 200  # (LeRobot's default, recorded in info.json; no videos are written)
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH_FIELDS = ("video_key", "chunk_index", "file_index")  # what info.json's video_path template names
VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp")  # the episodes parquet's videos/KEY/... columns
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
TASKS_PATH = "meta/tasks.parquet"
SIDECAR_PATH = "meta/minivla.json"
OUR_META = ("image_size", "state_dim", "action_dim", "observation", "camera", "extra_cameras")  # in minivla.json
METAWORLD_FPS = 80  # Meta-World steps its simulation 0.0125 s at a time
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")  # every frame's bookkeeping
STATE_NAMES = {"proprio": ["x", "y", "z", "gripper"]}  # hand position and gripper opening
SIM_ACTION_NAMES = ["x", "y", "z", "gripper"]  # the simulated arms' hand velocity and gripper effort


# --- statistics, as meta/stats.json and the episodes' stats/ columns hold them ---------------------------------

def vector_stats(values: np.ndarray) -> dict:
    """Stats of a (frames, size) array: each a list of `size` numbers (count: [frames])."""
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    stats = {"min": values.min(0), "max": values.max(0), "mean": values.mean(0), "std": values.std(0),
             "count": np.array([len(values)])}
    stats.update({name: np.quantile(values, q, axis=0) for name, q in QUANTILES.items()})
    return {name: value.tolist() for name, value in stats.items()}


def image_histogram(images: np.ndarray) -> np.ndarray:
    """(3, 256) counts of each channel's uint8 values over (frames, H, W, 3) images: stats that add up exactly."""
    return np.stack([np.bincount(images[..., c].ravel(), minlength=256) for c in range(3)])


def image_stats(histogram: np.ndarray, frames: int) -> dict:
    """LeRobot's image stats from channel histograms: per channel, pixels scaled to [0, 1], each shaped (3, 1, 1)."""
    levels = np.arange(256) / 255.0
    totals = histogram.sum(1)
    mean = histogram @ levels / totals
    std = np.sqrt(np.maximum(histogram @ levels**2 / totals - mean**2, 0.0))
    present = histogram > 0
    stats = {"min": levels[present.argmax(1)], "max": levels[255 - present[:, ::-1].argmax(1)], "mean": mean,
             "std": std}
    cumulative = histogram.cumsum(1) / totals[:, None]
    for name, q in QUANTILES.items():
        stats[name] = levels[(cumulative >= q).argmax(1)]
    shaped = {name: value.reshape(3, 1, 1).tolist() for name, value in stats.items()}
    return {**shaped, "count": [frames]}


class FeatureStats:
    """Stats of every feature over the episodes added so far: exact for images (histograms add up) and numbers."""

    def __init__(self, image_keys: list[str]):
        self.image_keys = image_keys
        self.histograms = {key: np.zeros((3, 256), dtype=np.int64) for key in image_keys}
        self.vectors: dict[str, list[np.ndarray]] = {}
        self.frames = 0

    def episode(self, images: dict[str, np.ndarray], vectors: dict[str, np.ndarray]) -> dict:
        """Add one episode; return its own stats (the episodes parquet's stats/ columns)."""
        frames = len(next(iter(vectors.values())))
        own = {}
        for key in self.image_keys:
            histogram = image_histogram(images[key])
            self.histograms[key] += histogram
            own[key] = image_stats(histogram, frames)
        for key, values in vectors.items():
            self.vectors.setdefault(key, []).append(values)
            own[key] = vector_stats(values)
        self.frames += frames
        return own

    def total(self) -> dict:
        stats = {key: image_stats(self.histograms[key], self.frames) for key in self.image_keys}
        stats.update({key: vector_stats(np.concatenate(parts)) for key, parts in self.vectors.items()})
        return stats


# --- export ---------------------------------------------------------------------------------------------------

@dataclass
class ExportSummary:
    out: Path
    episodes: int
    frames: int
    tasks: int
    fps: int
    data_files: int

    def text(self) -> str:
        return (f"wrote {counted(self.episodes, 'episode')} ({counted(self.frames, 'frame')}, "
                f"{counted(self.tasks, 'task')}) as a LeRobot dataset {CODEBASE_VERSION} at {self.fps} fps, "
                f"{counted(self.data_files, 'data file')} -> {self.out}")


def counted(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def image_feature_keys(meta: dict) -> list[str]:
    """The image feature of each of our cameras, scene camera first."""
    return [SCENE_IMAGE] + [EXTRA_IMAGE_PREFIX + camera for camera in meta["extra_cameras"]]


def metaworld_task(task: str) -> bool:
    from minivla_core.envs.metaworld_suites import GROUP_OF  # pure data: imports neither Meta-World nor MuJoCo

    return task in GROUP_OF


def export_fps(entries: list[dict], fps: int, dataset: Path) -> int:
    """The fps of info.json: `fps` if given (> 0), else the one every episode recorded, else Meta-World's."""
    if fps > 0:
        return fps
    recorded = {entry.get("fps") for entry in entries}
    if len(recorded) == 1 and isinstance(next(iter(recorded)), int) and next(iter(recorded)) > 0:
        return next(iter(recorded))
    if all(metaworld_task(entry["task"]) for entry in entries):
        return METAWORLD_FPS
    raise DatasetError(f"dataset {dataset} does not say at how many frames per second its episodes were recorded "
                       f"(its tasks are not all Meta-World's): give it with --fps (lerobot.fps)")


def info_features(meta: dict) -> dict:
    """info.json's features: ours, then LeRobot's per-frame bookkeeping."""
    size = meta["image_size"]
    image = {"dtype": "image", "shape": [size, size, 3], "names": ["height", "width", "channels"]}
    simulated = meta["observation"] in ("proprio", "full") and meta["action_dim"] == len(SIM_ACTION_NAMES)
    features = {key: dict(image) for key in image_feature_keys(meta)}
    features[STATE] = {"dtype": "float32", "shape": [meta["state_dim"]],
                       "names": STATE_NAMES.get(meta["observation"])}
    features[ACTION] = {"dtype": "float32", "shape": [meta["action_dim"]],
                        "names": SIM_ACTION_NAMES if simulated else None}
    features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
    for name in INDEX_COLUMNS[1:]:
        features[name] = {"dtype": "int64", "shape": [1], "names": None}
    return features


def data_schema(meta: dict) -> pa.Schema:
    """The data parquet's columns, with the Hugging Face `datasets` types LeRobot reads them with."""
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    columns = [pa.field(key, image) for key in image_feature_keys(meta)]
    columns += [pa.field(STATE, pa.list_(pa.float32(), meta["state_dim"])),
                pa.field(ACTION, pa.list_(pa.float32(), meta["action_dim"])),
                pa.field("timestamp", pa.float32())] + [pa.field(name, pa.int64()) for name in INDEX_COLUMNS[1:]]
    hf = {key: {"_type": "Image"} for key in image_feature_keys(meta)}
    for key, size in ((STATE, meta["state_dim"]), (ACTION, meta["action_dim"])):
        hf[key] = {"feature": {"dtype": "float32", "_type": "Value"}, "length": size, "_type": "List"}
    hf["timestamp"] = {"dtype": "float32", "_type": "Value"}
    hf.update({name: {"dtype": "int64", "_type": "Value"} for name in INDEX_COLUMNS[1:]})
    return pa.schema(columns, metadata={"huggingface": json.dumps({"info": {"features": hf}})})


def png_bytes(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))  # OpenCV writes BGR
    if not ok:
        raise DatasetError(f"could not encode a {image.shape} image as PNG")
    return encoded.tobytes()


def write_tasks(path: Path, tasks: list[str]) -> None:
    """meta/tasks.parquet as pandas writes a frame indexed by task (LeRobot reads it with pandas.read_parquet)."""
    pandas_meta = {"index_columns": ["task"], "column_indexes": [],
                   "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                                "numpy_type": "int64", "metadata": None},
                               {"name": "task", "field_name": "task", "pandas_type": "unicode",
                                "numpy_type": "object", "metadata": None}]}
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    pq.write_table(table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)}), path)


class DataFiles:
    """The data parquet files: one row group per episode, a new file once one holds DATA_FILES_SIZE_MB."""

    def __init__(self, root: Path, schema: pa.Schema):
        self.root, self.schema = root, schema
        self.chunk = self.file = 0
        self.writer: pq.ParquetWriter | None = None
        self.bytes = 0
        self.files = 0

    def write(self, table: pa.Table) -> tuple[int, int]:
        """Write one episode's rows; returns the (chunk_index, file_index) that holds them."""
        if self.writer is not None and self.bytes >= DATA_FILES_SIZE_MB * 1024 * 1024:
            self.writer.close()
            self.writer, self.bytes = None, 0
            self.file += 1
            if self.file == CHUNKS_SIZE:
                self.chunk, self.file = self.chunk + 1, 0
        if self.writer is None:
            path = self.root / DATA_PATH.format(chunk_index=self.chunk, file_index=self.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(path, self.schema, compression="snappy")
            self.files += 1
        self.writer.write_table(table)
        self.bytes += table.nbytes
        return self.chunk, self.file

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def export_lerobot(dataset: str | Path, out: str | Path, fps: int = 0) -> ExportSummary:
    """Write our dataset folder `dataset` as a new LeRobot dataset v3.0 folder `out`."""
    dataset, out = Path(dataset), Path(out)
    meta = read_meta(dataset)
    entries = read_index(dataset)
    if not entries:
        raise DatasetError(f"dataset {dataset} has no episodes")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out} already exists; export-lerobot writes a new folder")
    fps = export_fps(entries, fps, dataset)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by an export that did not finish
    image_keys = image_feature_keys(meta)
    tasks = list(dict.fromkeys(entry["instruction"] for entry in entries))
    task_index = {task: i for i, task in enumerate(tasks)}
    stats = FeatureStats(image_keys)
    data = DataFiles(partial, data_schema(meta))
    rows, frame = [], 0
    try:
        for number, entry in enumerate(entries):
            episode = read_episode(dataset, meta, entry)
            steps = len(episode.actions)
            images = {key: episode.images[:, view] for view, key in enumerate(image_keys)}
            columns = {STATE: episode.states, ACTION: episode.actions,
                       "timestamp": (np.arange(steps) / fps).astype(np.float32),
                       "frame_index": np.arange(steps), "episode_index": np.full(steps, number),
                       "index": np.arange(frame, frame + steps),
                       "task_index": np.full(steps, task_index[entry["instruction"]])}
            table = {key: [{"bytes": png_bytes(image), "path": None} for image in images[key]] for key in image_keys}
            table.update({key: list(values) for key, values in columns.items()})
            chunk, file = data.write(pa.table(table, schema=data.schema))
            own = stats.episode(images, {key: np.asarray(values) for key, values in columns.items()})
            row = {"episode_index": number, "tasks": [entry["instruction"]], "length": steps,
                   "data/chunk_index": chunk, "data/file_index": file, "dataset_from_index": frame,
                   "dataset_to_index": frame + steps}
            row.update({f"stats/{key}/{name}": value for key, values in own.items() for name, value in values.items()})
            row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            rows.append(row)
            frame += steps
    except BaseException:
        data.close()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    data.close()
    (partial / "meta" / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), partial / EPISODES_PATH)
    write_tasks(partial / TASKS_PATH, tasks)
    robot = "metaworld" if all(metaworld_task(entry["task"]) for entry in entries) else None
    info = {"codebase_version": CODEBASE_VERSION, "fps": fps, "features": info_features(meta),
            "total_episodes": len(entries), "total_frames": frame, "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILES_SIZE_MB,
            "video_files_size_in_mb": VIDEO_FILES_SIZE_MB, "data_path": DATA_PATH, "video_path": None,
            "robot_type": robot, "splits": {"train": f"0:{len(entries)}"}}
    (partial / "meta" / "info.json").write_text(json.dumps(info, indent=4) + "\n")
    (partial / "meta" / "stats.json").write_text(json.dumps(stats.total(), indent=4) + "\n")
    sidecar = {"format": "minivla-dataset", "meta": meta,
               "episodes": [{k: v for k, v in entry.items() if k != "file"} for entry in entries]}
    (partial / SIDECAR_PATH).write_text(json.dumps(sidecar, indent=1) + "\n")
    if out.exists():
        out.rmdir()  # empty (checked above)
    os.replace(partial, out)
    return ExportSummary(out, len(entries), frame, len(tasks), fps, data.files)


# --- import ---------------------------------------------------------------------------------------------------

@dataclass
class ImportSummary:
    out: Path
    episodes: int = 0
    frames: int = 0
    tasks: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"imported {counted(self.episodes, 'episode')} ({counted(self.frames, 'frame')}, "
                 f"{counted(len(self.tasks), 'task')}) -> {self.out}"]
        return "\n".join(lines + [f"note: {note}" for note in self.notes])


def read_lerobot_json(path: Path) -> dict:
    return read_json(path, f"{path} is missing: not a LeRobot dataset {CODEBASE_VERSION}")


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"{path} is not a readable parquet file: {exc}") from exc
    missing = [name for name in columns or [] if name not in table.column_names]
    if missing:
        raise DatasetError(f"{path} has no column {', '.join(repr(m) for m in missing)} "
                           f"(it has {', '.join(table.column_names)})")
    return table


def check_info(root: Path) -> dict:
    """info.json, if it is a v3.0 dataset whose features our format can hold; else a DatasetError naming the field."""
    path = root / "meta" / "info.json"
    if not root.is_dir():
        raise DatasetError(f"LeRobot dataset {root} does not exist")
    info = read_lerobot_json(path)
    version = info.get("codebase_version")
    if version != CODEBASE_VERSION:
        hint = (" (LeRobot converts a v2.1 dataset: python -m lerobot.scripts.convert_dataset_v21_to_v30)"
                if isinstance(version, str) and version.startswith("v2") else "")
        raise DatasetError(f"{path}: codebase_version is {version!r}; import-lerobot reads {CODEBASE_VERSION} "
                           f"only{hint}")
    features = info.get("features")
    if not isinstance(features, dict):
        raise DatasetError(f"{path}: 'features' is missing or not an object")
    fps = info.get("fps")
    if not isinstance(fps, (int, float)) or fps <= 0:
        raise DatasetError(f"{path}: fps must be a positive number, got {fps!r}")
    for key in (STATE, ACTION):
        feature = features.get(key)
        if not isinstance(feature, dict):
            raise DatasetError(f"{path}: feature {key!r} is missing; our datasets need {STATE!r} (the robot's state "
                               f"before each step) and {ACTION!r} (its command)")
        shape = feature.get("shape")
        if feature.get("dtype") not in ("float32", "float64") or not (
                isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int) and shape[0] >= 1):
            raise DatasetError(f"{path}: feature {key!r} is {feature.get('dtype')} of shape {shape}; expected float32 "
                               f"(or float64) of shape [n]")
    visual = [key for key, feature in features.items()
              if isinstance(feature, dict) and feature.get("dtype") in ("image", "video")]
    video_path = info.get("video_path")
    if any(features[key]["dtype"] == "video" for key in visual) and not (
            isinstance(video_path, str) and all(f"{{{name}" in video_path for name in VIDEO_PATH_FIELDS)):
        raise DatasetError(f"{path}: video_path must be a template with video_key, chunk_index and file_index, got "
                           f"{video_path!r}")
    if not visual:
        raise DatasetError(f"{path}: no image feature; our policy needs at least one camera")
    data_path = info.get("data_path")
    if not isinstance(data_path, str) or "{chunk_index" not in data_path or "{file_index" not in data_path:
        raise DatasetError(f"{path}: data_path must be a template with chunk_index and file_index, got {data_path!r}")
    return info


def image_size(feature: dict, key: str, path: Path) -> tuple[int, int]:
    """(height, width) of an image feature, whose shape is (H, W, 3) or (3, H, W) (its names say which)."""
    shape, names = feature.get("shape"), feature.get("names")
    if isinstance(shape, list) and len(shape) == 3 and all(isinstance(n, int) and n > 0 for n in shape):
        if isinstance(names, list) and len(names) == 3 and "height" in names and "width" in names:
            order = {name: shape[i] for i, name in enumerate(names)}
            channels = [n for name, n in order.items() if name not in ("height", "width")]
            if channels == [3]:
                return order["height"], order["width"]
        elif shape[2] == 3:
            return shape[0], shape[1]
        elif shape[0] == 3:
            return shape[1], shape[2]
    raise DatasetError(f"{path}: feature {key!r} has shape {shape} (names {names}); expected an RGB image, "
                       f"[height, width, 3] or [3, height, width]")


def camera_name(key: str) -> str:
    return key[len(EXTRA_IMAGE_PREFIX):] if key.startswith(EXTRA_IMAGE_PREFIX) else key


def read_tasks(root: Path) -> dict[int, str]:
    """task_index -> task string, from meta/tasks.parquet (a pandas frame indexed by the task)."""
    path = root / TASKS_PATH
    table = read_parquet(path, ["task_index"])
    column = "task"
    if column not in table.column_names:  # an unnamed pandas index
        pandas_meta = json.loads((table.schema.metadata or {}).get(b"pandas", b"{}"))
        names = [name for name in pandas_meta.get("index_columns", []) if isinstance(name, str)]
        if not names or names[0] not in table.column_names:
            raise DatasetError(f"{path} has no task column (it has {', '.join(table.column_names)})")
        column = names[0]
    return dict(zip(table.column("task_index").to_pylist(), table.column(column).to_pylist()))


def read_episode_rows(root: Path, video_keys: list[str]) -> list[dict]:
    """Every row of meta/episodes/*/*.parquet, in episode order (with where each video feature's frames are)."""
    files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    if not files:
        raise DatasetError(f"{root / 'meta' / 'episodes'} holds no parquet file: not a LeRobot dataset "
                           f"{CODEBASE_VERSION}")
    needed = ["episode_index", "length", "data/chunk_index", "data/file_index"]
    needed += [f"videos/{key}/{name}" for key in video_keys for name in VIDEO_COLUMNS]
    rows = [row for path in files for row in read_parquet(path, needed).select(needed).to_pylist()]
    return sorted(rows, key=lambda row: row["episode_index"])


def column_array(table: pa.Table, key: str, rows: np.ndarray, size: int, where: str) -> np.ndarray:
    """A vector feature's rows as float32 (len(rows), size)."""
    column = table.column(key).take(pa.array(rows)).combine_chunks()
    if not (pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type) or
            pa.types.is_large_list(column.type)):
        raise DatasetError(f"{where}: column {key!r} holds {column.type}, expected lists of {size} numbers")
    values = column.flatten().to_numpy(zero_copy_only=False)
    if values.size != len(rows) * size or column.null_count:
        raise DatasetError(f"{where}: column {key!r} does not hold {size} numbers in every row")
    return values.reshape(len(rows), size).astype(np.float32)


def parquet_images(table: pa.Table, key: str, rows: np.ndarray, where: str) -> list[np.ndarray]:
    """An image feature's rows, decoded from the bytes in the data parquet (BGR, as OpenCV decodes)."""
    column = table.column(key).take(pa.array(rows)).combine_chunks()
    if not pa.types.is_struct(column.type) or column.type.get_field_index("bytes") < 0:
        raise DatasetError(f"{where}: column {key!r} holds {column.type}, expected images (a struct with bytes)")
    images = []
    for frame, data in enumerate(column.field("bytes").to_pylist()):
        if data is None:
            raise DatasetError(f"{where}: {key!r} frame {frame} has no image bytes (images stored as separate files "
                               f"are not read)")
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"{where}: {key!r} frame {frame} is not a readable image")
        images.append(image)
    return images


class VideoFrames:
    """The frames of one video feature, decoded by OpenCV (its FFmpeg reads LeRobot's AV1 and H.264 mp4 files).
    Episodes are asked for in order, so each file is decoded once, front to back; a file holds several episodes,
    one after another, and frame n of a file is the one at n / video.fps seconds."""

    def __init__(self, source_root: Path, info: dict, key: str):
        self.root, self.template, self.key = source_root, info["video_path"], key
        self.fps = (info["features"][key].get("info") or {}).get("video.fps") or info["fps"]
        self.path: Path | None = None
        self.capture = None
        self.read = 0  # frames of the open file read so far
        self.last = None

    def frames(self, row: dict, timestamps: np.ndarray, where: str) -> list[np.ndarray]:
        """An episode's frames (BGR), at its data timestamps from its row's videos/KEY/from_timestamp."""
        prefix = f"videos/{self.key}/"
        path = self.root / self.template.format(video_key=self.key, chunk_index=row[prefix + "chunk_index"],
                                                file_index=row[prefix + "file_index"])
        numbers = np.round((row[prefix + "from_timestamp"] + timestamps) * self.fps).astype(int)
        if path != self.path or numbers[0] < self.read - 1:
            self.open(path)
        images = []
        for number in numbers:
            while self.read <= number:
                ok, self.last = self.capture.read()
                if not ok:
                    raise DatasetError(f"{path} ({self.key!r}, {where}) ends after {self.read} frames; the episode "
                                       f"needs frame {number}")
                self.read += 1
            if number != self.read - 1:
                raise DatasetError(f"{where}: the timestamps of {self.key!r} go back in {path}")
            images.append(self.last)
        return images

    def open(self, path: Path) -> None:
        if self.capture is not None:
            self.capture.release()
        if not path.is_file():
            raise DatasetError(f"{path} is missing (the video of {self.key!r})")
        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise DatasetError(f"{path} is not a video OpenCV can read (the video of {self.key!r})")
        self.path, self.read, self.last = path, 0, None


def fit_images(images: list[np.ndarray], key: str, shape: tuple[int, int], size: int, where: str) -> np.ndarray:
    """Decoded BGR frames as RGB uint8 (frames, size, size, 3): checked against the feature's (height, width), then
    cropped to the centred square and resized where they are not size x size already."""
    fitted = []
    for frame, image in enumerate(images):
        if image.shape[:2] != shape:
            raise DatasetError(f"{where}: {key!r} frame {frame} is {image.shape[0]}x{image.shape[1]}, but info.json "
                               f"says {shape[0]}x{shape[1]}")
        image = image[..., ::-1]
        if image.shape[:2] != (size, size):
            height, width = image.shape[:2]
            side = min(height, width)
            top, left = (height - side) // 2, (width - side) // 2
            image = cv2.resize(image[top:top + side, left:left + side], (size, size), interpolation=cv2.INTER_AREA)
        fitted.append(image)
    return np.ascontiguousarray(np.stack(fitted))


def read_sidecar(root: Path, rows: list[dict]) -> tuple[dict | None, str]:
    """meta/minivla.json's meta and entries if they still describe these episodes, else (None, why not)."""
    path = root / SIDECAR_PATH
    if not path.is_file():
        return None, ""
    try:
        sidecar = json.loads(path.read_text())
        meta, entries = sidecar["meta"], sidecar["episodes"]
        lengths = [entry["steps"] for entry in entries]
        ours = (sidecar["format"] == "minivla-dataset" and all(key in meta for key in OUR_META)
                and all(isinstance(entry["task"], str) and isinstance(entry["instruction"], str) for entry in entries))
    except (json.JSONDecodeError, KeyError, TypeError):
        ours = False
    if not ours:
        return None, f"{path} is not ours or is damaged: read as any LeRobot dataset"
    if lengths != [row["length"] for row in rows]:
        return None, f"{path} does not match the episodes (edited since export?): read as any LeRobot dataset"
    return sidecar, ""


def choose_observation(info: dict, state_dim: int, given: str | None, path: Path) -> str:
    if given is not None:
        if OBSERVATIONS.get(given) not in (None, state_dim):
            raise DatasetError(f"{path}: {STATE!r} holds {state_dim} numbers, but observation {given!r} is "
                               f"{state_dim_of(given)}")
        return given
    if info.get("robot_type") == "metaworld":
        for observation in ("proprio", "full"):
            if state_dim_of(observation) == state_dim:
                return observation
    return "robot"


@dataclass
class Source:
    """What import reads before any frame: the LeRobot dataset's metadata, and the meta.json our copy gets."""

    root: Path
    info: dict
    rows: list[dict]  # meta/episodes, in episode order
    tasks: dict[int, str]  # task_index -> task string
    image_keys: list[str]  # scene camera first
    shapes: dict[str, tuple[int, int]]  # image feature -> (height, width) in the parquet
    meta: dict  # our meta.json's fields
    entries: list[dict] | None  # meta/minivla.json's episode entries, if it matches
    notes: list[str]


def read_source(root: Path, size: int | None, observation: str | None) -> Source:
    info = check_info(root)
    info_path = root / "meta" / "info.json"
    features = info["features"]
    visual = [key for key, feature in features.items()
              if isinstance(feature, dict) and feature.get("dtype") in ("image", "video")]
    rows = read_episode_rows(root, [key for key in visual if features[key]["dtype"] == "video"])
    if len(rows) != info.get("total_episodes", len(rows)):
        raise DatasetError(f"{info_path}: total_episodes is {info.get('total_episodes')}, but meta/episodes lists "
                           f"{len(rows)}")
    sidecar, note = read_sidecar(root, rows)
    notes = [note] if note else []
    if sidecar is not None:
        image_keys = image_feature_keys(sidecar["meta"])
        missing = [key for key in image_keys if key not in visual]
        if missing:
            raise DatasetError(f"{info_path}: feature {missing[0]!r} is missing (meta/minivla.json lists its camera)")
    else:
        scene = SCENE_IMAGE if SCENE_IMAGE in visual else visual[0]
        image_keys = [scene] + [key for key in visual if key != scene]
    shapes = {key: image_size(features[key], key, info_path) for key in image_keys}
    if size is None:
        if any(height != width for height, width in shapes.values()) or len(set(shapes.values())) != 1:
            raise DatasetError(f"{info_path}: the images are {', '.join(f'{h}x{w}' for h, w in shapes.values())}; "
                               f"our datasets hold square images of one size: give --image-size to crop and resize")
        size = next(iter(shapes.values()))[0]
    state_dim, action_dim = features[STATE]["shape"][0], features[ACTION]["shape"][0]
    if sidecar is not None:
        meta = {**sidecar["meta"], "image_size": size}
        if (meta.get("state_dim"), meta.get("action_dim")) != (state_dim, action_dim):
            raise DatasetError(f"{info_path}: {STATE!r} and {ACTION!r} hold {state_dim} and {action_dim} numbers, "
                               f"but meta/minivla.json says {meta.get('state_dim')} and {meta.get('action_dim')}")
        if observation is not None:
            meta["observation"] = choose_observation(info, state_dim, observation, info_path)
    else:
        meta = {"image_size": size, "state_dim": state_dim, "action_dim": action_dim,
                "observation": choose_observation(info, state_dim, observation, info_path), "camera": {},
                "extra_cameras": [camera_name(key) for key in image_keys[1:]]}
        left_out = [key for key in features if key not in (*image_keys, STATE, ACTION, *INDEX_COLUMNS, SUCCESS)]
        if left_out:
            notes.append(f"features not imported: {', '.join(left_out)}")
    return Source(root, info, rows, read_tasks(root), image_keys, shapes, meta,
                  sidecar["episodes"] if sidecar is not None else None, notes)


@dataclass
class LeRobotEpisode:
    images: np.ndarray  # (T, cameras, size, size, 3)
    states: np.ndarray
    actions: np.ndarray
    task: str  # the LeRobot task string
    number: int  # its episode_index
    success: bool | None  # whether any next.success is true (None: no such feature)


def read_lerobot_episodes(source: Source):
    """Each episode of the source, one at a time, checked (frames, values, task) and with images at meta's size."""
    info, size = source.info, source.meta["image_size"]
    state_dim, action_dim = source.meta["state_dim"], source.meta["action_dim"]
    by_file: dict[tuple[int, int], list[dict]] = {}
    for row in source.rows:
        by_file.setdefault((row["data/chunk_index"], row["data/file_index"]), []).append(row)
    videos = {key: VideoFrames(source.root, info, key) for key in source.image_keys
              if info["features"][key]["dtype"] == "video"}
    in_parquet = [key for key in source.image_keys if key not in videos]
    for (chunk, file), rows in sorted(by_file.items()):
        path = source.root / info["data_path"].format(chunk_index=chunk, file_index=file)
        needed = [*in_parquet, STATE, ACTION, "episode_index", "frame_index", "task_index"]
        table = read_parquet(path, needed + (["timestamp"] if videos else []))
        episode_of = table.column("episode_index").to_numpy()
        frame_of = table.column("frame_index").to_numpy()
        for row in rows:
            number = row["episode_index"]
            where = f"{path} episode {number}"
            rows_of = np.flatnonzero(episode_of == number)
            rows_of = rows_of[np.argsort(frame_of[rows_of], kind="stable")]
            if len(rows_of) != row["length"] or not np.array_equal(frame_of[rows_of], np.arange(len(rows_of))):
                raise DatasetError(f"{where}: holds {len(rows_of)} frames (frame_index {frame_of[rows_of][:3].tolist()}"
                                   f"...), but meta/episodes says length {row['length']} from frame 0")
            states = column_array(table, STATE, rows_of, state_dim, where)
            actions = column_array(table, ACTION, rows_of, action_dim, where)
            try:
                check_values(states, actions, where)
            except DatasetError as exc:
                raise DatasetError(f"{exc} (features {STATE!r}, {ACTION!r}; our actions are commands normalised to "
                                   f"[-{ACTION_LIMIT:g}, {ACTION_LIMIT:g}])") from None
            task_indices = sorted(set(table.column("task_index").to_numpy()[rows_of].tolist()))
            if len(task_indices) != 1 or task_indices[0] not in source.tasks:
                raise DatasetError(f"{where}: task_index {task_indices} is not one task of "
                                   f"{source.root / TASKS_PATH}; our episodes hold one instruction each")
            views = []
            for key in source.image_keys:
                if key in videos:
                    timestamps = table.column("timestamp").to_numpy(zero_copy_only=False)[rows_of].astype(np.float64)
                    frames = videos[key].frames(row, timestamps, where)
                else:
                    frames = parquet_images(table, key, rows_of, where)
                views.append(fit_images(frames, key, source.shapes[key], size, where))
            images = np.stack(views, axis=1)
            success = None
            if SUCCESS in table.column_names:
                success = bool(np.any(table.column(SUCCESS).to_numpy(zero_copy_only=False)[rows_of]))
            yield LeRobotEpisode(images, states, actions, source.tasks[task_indices[0]], int(number), success)


def import_lerobot(source: str | Path, out: str | Path, size: int | None = None, task: str | None = None,
                   observation: str | None = None) -> ImportSummary:
    """Append the episodes of the LeRobot v3.0 dataset `source` to our dataset folder `out` (created if needed; an
    import that fails removes the folder it created). `size`: the images' side in `out` (None: the source's, which
    must be square); `task`: the task name of every episode (None: as meta/minivla.json says, else the LeRobot task
    string); `observation`: what the states are (None: as meta/minivla.json says, else from robot_type and the
    state's size)."""
    out = Path(out)
    plan = read_source(Path(source), size, observation)
    summary = ImportSummary(out, notes=plan.notes)
    meta, created = plan.meta, not out.exists()
    try:
        with DatasetWriter(out, meta["image_size"], meta["state_dim"], meta["action_dim"], meta["observation"],
                           meta["camera"], meta["extra_cameras"]) as writer:
            for episode in read_lerobot_episodes(plan):
                if plan.entries is not None:  # the episode's own index entry, as it was before export
                    extra = {k: v for k, v in plan.entries[summary.episodes].items() if k != "steps"}
                    name, instruction = extra.pop("task"), extra.pop("instruction")
                else:
                    name, instruction = episode.task, episode.task
                    extra = {"source": "lerobot", "lerobot_episode": episode.number, "fps": plan.info["fps"]}
                    if episode.success is not None:
                        extra["success"] = episode.success
                writer.append(episode.images, episode.states, episode.actions, task=task or name,
                              instruction=instruction, **extra)
                summary.episodes += 1
                summary.frames += len(episode.actions)
                summary.tasks.add(task or name)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return summary
