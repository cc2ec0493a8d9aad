"""LeRobot dataset v3.0 in and out (minivla_core/data/lerobot.py, `minivla export-lerobot` / `import-lerobot`).

- Our dataset -> v3 -> our dataset is identical: meta.json, every index entry, every image, state and action; also
  with the data rolled over into several files and chunks, an extra camera, a 3-number action and a robot state.
- The v3 files are LeRobot's layout, read here with pyarrow alone: info.json, stats.json, tasks.parquet, the
  episodes parquet, and PNG images in the data parquet.
- test/data/lerobot_v3_small was written by LeRobot's own writer (LeRobot 0.6.1, bench/check_lerobot_compat.py
  write-fixture) in the layout of LeRobot's metaworld_mt50: it imports, its values agree with the stats.json
  LeRobot computed, and a policy trains on it. test/data/lerobot_v3_video holds the same frames as LeRobot's AV1
  mp4: decoded, they are close to the images, episode by episode; a video of known frames lands frame by frame.
- What cannot be read is refused naming the file and the field.
"""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from minivla_test_utils import tiny_model_config
from minivla_core import cli
from minivla_core.config import Config, EnvConfig
from minivla_core.data import lerobot
from minivla_core.data.dataset import DatasetWriter, load_episodes, read_index
from minivla_core.errors import DatasetError

FIXTURE = Path(__file__).parent / "data" / "lerobot_v3_small"
VIDEO_FIXTURE = Path(__file__).parent / "data" / "lerobot_v3_video"
VIDEO_FILE = "videos/observation.image/chunk-000/file-000.mp4"
DATA_FILE = "data/chunk-000/file-000.parquet"


def assert_identical(original: Path, copy: Path) -> None:
    assert json.loads((copy / "meta.json").read_text()) == json.loads((original / "meta.json").read_text())
    assert read_index(copy) == read_index(original)
    (_, before), (_, after) = load_episodes(original), load_episodes(copy)
    assert len(before) == len(after)
    for a, b in zip(before, after):
        for name in ("images", "states", "actions"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
            assert getattr(a, name).dtype == getattr(b, name).dtype
        assert (a.task, a.instruction) == (b.task, b.instruction)


def test_our_dataset_to_v3_and_back_is_identical(two_episode_dataset, tmp_path):
    out, back = tmp_path / "v3", tmp_path / "back"
    assert cli.main(["export-lerobot", str(two_episode_dataset), str(out)]) == 0
    assert cli.main(["import-lerobot", str(out), "--out", str(back)]) == 0
    assert_identical(two_episode_dataset, back)
    assert not (tmp_path / "v3.partial").exists()


def test_the_export_is_lerobots_layout(two_episode_dataset, tmp_path):
    out = tmp_path / "v3"
    lerobot.export_lerobot(two_episode_dataset, out)
    _, episodes = load_episodes(two_episode_dataset)
    entries = read_index(two_episode_dataset)
    frames = sum(len(e.actions) for e in episodes)
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 80 and info["robot_type"] == "metaworld"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, frames, 1)
    assert info["splits"] == {"train": "0:2"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["features"]["observation.image"] == {"dtype": "image", "shape": [32, 32, 3],
                                                     "names": ["height", "width", "channels"]}
    assert info["features"]["action"]["shape"] == [4] and info["features"]["observation.state"]["shape"] == [4]
    for name in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert info["features"][name]["shape"] == [1]

    data = pq.read_table(out / DATA_FILE)
    assert pq.ParquetFile(out / DATA_FILE).num_row_groups == 2  # one per episode, as LeRobot writes
    assert data.column("index").to_pylist() == list(range(frames))
    assert data.column("episode_index").to_pylist() == [0] * len(episodes[0].actions) + [1] * len(episodes[1].actions)
    assert data.column("frame_index").to_pylist()[:3] == [0, 1, 2]
    assert data.column("timestamp").to_pylist()[:2] == [0.0, np.float32(1 / 80)]
    png = data.column("observation.image").to_pylist()[5]["bytes"]
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert np.array_equal(decoded, episodes[0].images[5, 0])
    assert np.array_equal(np.array(data.column("action").to_pylist()[5], np.float32), episodes[0].actions[5])

    tasks = pq.read_table(out / "meta/tasks.parquet").to_pylist()
    assert tasks == [{"task_index": 0, "task": entries[0]["instruction"]}]
    rows = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(r["episode_index"], r["length"], r["dataset_from_index"], r["dataset_to_index"], r["tasks"])
            for r in rows] == [(0, len(episodes[0].actions), 0, len(episodes[0].actions), [entries[0]["instruction"]]),
                               (1, len(episodes[1].actions), len(episodes[0].actions), frames,
                                [entries[1]["instruction"]])]
    assert rows[1]["stats/action/max"] == episodes[1].actions.max(0).astype(np.float64).tolist()

    stats = json.loads((out / "meta/stats.json").read_text())
    actions = np.concatenate([e.actions for e in episodes])
    assert np.allclose(stats["action"]["min"], actions.min(0)) and np.allclose(stats["action"]["std"], actions.std(0))
    pixels = np.concatenate([e.images[:, 0] for e in episodes]).reshape(-1, 3) / 255.0
    assert np.allclose(np.array(stats["observation.image"]["mean"]).ravel(), pixels.mean(0))
    assert np.allclose(np.array(stats["observation.image"]["q50"]).ravel(), np.quantile(pixels, 0.5, axis=0,
                                                                                       method="inverted_cdf"))
    assert stats["observation.image"]["count"] == [frames]


def test_several_data_files_and_chunks_another_robot_and_an_extra_camera(tmp_path, monkeypatch):
    """A robot's dataset: a 7-number state, a twist without gripper (3 numbers), two cameras; every episode in a
    data file of its own and one file per chunk."""
    ours = tmp_path / "ours"
    rng = np.random.default_rng(0)
    with DatasetWriter(ours, 16, 7, 3, "robot", extra_cameras=["wrist"]) as writer:
        for steps in (5, 3, 4):
            writer.append(rng.integers(0, 256, (steps, 2, 16, 16, 3)), rng.standard_normal((steps, 7)),
                          rng.uniform(-1, 1, (steps, 3)), task="robot", instruction=f"wipe {steps} times",
                          source="bag", success=None)
    with pytest.raises(DatasetError, match="--fps"):
        lerobot.export_lerobot(ours, tmp_path / "v3")
    monkeypatch.setattr(lerobot, "DATA_FILES_SIZE_MB", 0)
    monkeypatch.setattr(lerobot, "CHUNKS_SIZE", 2)
    summary = lerobot.export_lerobot(ours, tmp_path / "v3", fps=15)
    assert summary.data_files == 3 and summary.fps == 15
    assert sorted(str(p.relative_to(tmp_path / "v3")) for p in (tmp_path / "v3/data").rglob("*.parquet")) == [
        "data/chunk-000/file-000.parquet", "data/chunk-000/file-001.parquet", "data/chunk-001/file-000.parquet"]
    info = json.loads((tmp_path / "v3/meta/info.json").read_text())
    assert info["robot_type"] is None and info["features"]["action"]["names"] is None
    assert info["features"]["observation.images.wrist"]["dtype"] == "image"
    lerobot.import_lerobot(tmp_path / "v3", tmp_path / "back")
    assert_identical(ours, tmp_path / "back")
    # Exported again from the copy: the episodes say their fps now (as imported ones do)
    assert lerobot.export_lerobot(tmp_path / "back", tmp_path / "again", fps=15).frames == 12


def test_the_lerobot_written_fixture_imports_and_trains_a_policy(tmp_path):
    from minivla_core.train import train

    out = tmp_path / "imported"
    summary = lerobot.import_lerobot(FIXTURE, out)
    assert (summary.episodes, summary.frames) == (2, 24)
    assert any("next.reward" in note for note in summary.notes)
    meta, episodes = load_episodes(out)
    assert (meta["image_size"], meta["state_dim"], meta["action_dim"]) == (32, 4, 4)
    assert meta["observation"] == "proprio"  # robot_type metaworld, 4 numbers: LeRobot's agent_pos
    entries = read_index(out)
    assert [e["instruction"] for e in entries] == ["Push the puck to a goal", "Reach a goal position"]
    assert [e["task"] for e in entries] == [e["instruction"] for e in entries]
    assert [e["success"] for e in entries] == [True, False]  # from next.success
    assert all(e["source"] == "lerobot" and e["fps"] == 80 for e in entries)

    # The numbers agree with the stats.json LeRobot's writer computed from the same frames
    stats = json.loads((FIXTURE / "meta/stats.json").read_text())
    for key, values in (("action", np.concatenate([e.actions for e in episodes])),
                        ("observation.state", np.concatenate([e.states for e in episodes]))):
        assert np.allclose(stats[key]["min"], values.min(0)) and np.allclose(stats[key]["max"], values.max(0))
        assert np.allclose(stats[key]["mean"], values.mean(0), atol=1e-6)
    pixels = np.concatenate([e.images[:, 0] for e in episodes]).reshape(-1, 3) / 255.0
    assert np.allclose(np.array(stats["observation.image"]["mean"]).ravel(), pixels.mean(0), atol=2e-3)

    config = Config(env=EnvConfig(image_size=32), model=tiny_model_config())
    config.train.dataset, config.train.out_dir = str(out), str(tmp_path / "run")
    config.train.epochs, config.train.batch_size, config.train.warmup_steps, config.train.val_fraction = 1, 8, 1, 0.5
    result = train(config, progress=False)
    assert (tmp_path / "run" / "last.pt").is_file() and np.isfinite(result["best_loss"])


def test_import_resizes_names_the_task_and_appends(tmp_path):
    out = tmp_path / "data"
    argv = ["import-lerobot", str(FIXTURE), "--out", str(out), "--image-size", "16", "--task", "push-v3"]
    assert cli.main(argv) == 0
    assert cli.main(argv) == 0  # a second import appends
    meta, episodes = load_episodes(out)
    assert meta["image_size"] == 16 and [e.images.shape[1:] for e in episodes] == [(1, 16, 16, 3)] * 4
    assert {e.task for e in episodes} == {"push-v3"}
    assert episodes[0].instruction == "Push the puck to a goal"
    assert cli.main(["import-lerobot", str(FIXTURE), "--out", str(out)]) == 2  # 32 px into a 16 px dataset


def test_a_lerobot_video_dataset_imports_close_to_its_images(tmp_path):
    summary = lerobot.import_lerobot(VIDEO_FIXTURE, tmp_path / "from_video")
    assert (summary.episodes, summary.frames) == (2, 24)
    lerobot.import_lerobot(FIXTURE, tmp_path / "from_images")
    (meta, video), (_, images) = load_episodes(tmp_path / "from_video"), load_episodes(tmp_path / "from_images")
    assert meta["image_size"] == 32 and meta["observation"] == "proprio"

    def difference(a, b):
        return np.abs(a.astype(int) - b.astype(int)).mean()

    for decoded, original in zip(video, images):  # (where each frame lands: the next test)
        assert np.array_equal(decoded.actions, original.actions) and decoded.instruction == original.instruction
        assert difference(decoded.images, original.images) < 8  # AV1 at LeRobot's default quality, 32 px


def test_each_video_frame_lands_on_its_episode_and_step(tmp_path):
    """The fixture's video replaced by one of known frames, flat grey n * 10 for frame n of the file: episode 1's
    frames start at its from_timestamp (frame 12), and step t is frame 12 + t."""
    source = tmp_path / "known"
    shutil.copytree(VIDEO_FIXTURE, source)
    video = cv2.VideoWriter(str(source / VIDEO_FILE), cv2.VideoWriter_fourcc(*"mp4v"), 80, (32, 32))
    for number in range(24):
        video.write(np.full((32, 32, 3), number * 10, np.uint8))
    video.release()
    lerobot.import_lerobot(source, tmp_path / "out", size=16)
    _, episodes = load_episodes(tmp_path / "out")
    levels = [np.round(e.images.mean(axis=(1, 2, 3, 4)) / 10).astype(int).tolist() for e in episodes]
    assert levels == [list(range(12)), list(range(12, 24))]

    video = cv2.VideoWriter(str(source / VIDEO_FILE), cv2.VideoWriter_fourcc(*"mp4v"), 80, (32, 32))
    for number in range(20):  # four frames short
        video.write(np.full((32, 32, 3), number * 10, np.uint8))
    video.release()
    with pytest.raises(DatasetError, match=r"file-000.mp4 \('observation.image', .*episode 1\) ends after 20 frames"):
        lerobot.import_lerobot(source, tmp_path / "short")


def edit_fixture(tmp_path: Path, info_change=None, data_change=None) -> Path:
    copy = tmp_path / "edited"
    shutil.copytree(FIXTURE, copy)
    if info_change:
        info = json.loads((copy / "meta/info.json").read_text())
        info_change(info)
        (copy / "meta/info.json").write_text(json.dumps(info))
    if data_change:
        pq.write_table(data_change(pq.read_table(copy / DATA_FILE)), copy / DATA_FILE)
    return copy


def times_three(table: pa.Table) -> pa.Table:
    actions = np.array(table.column("action").to_pylist(), np.float32) * 3
    column = pa.array(actions.tolist(), pa.list_(pa.float32(), 4))
    return table.set_column(table.column_names.index("action"), "action", column)


def drop_rows(table: pa.Table) -> pa.Table:
    return table.slice(1)


@pytest.mark.parametrize("info_change, data_change, message", [
    (lambda info: info.update(codebase_version="v2.1"), None,
     r"info.json: codebase_version is 'v2.1'; import-lerobot reads v3.0 only \(LeRobot converts"),
    (lambda info: info["features"].pop("action"), None, "info.json: feature 'action' is missing"),
    (lambda info: info["features"]["observation.image"].update(dtype="video"), None,
     "info.json: video_path must be a template with video_key, chunk_index and file_index, got None"),
    (lambda info: info["features"]["observation.state"].update(shape=[6]), None,
     "file-000.parquet episode 0: column 'observation.state' does not hold 6 numbers"),
    (lambda info: info["features"]["observation.image"].update(shape=[3, 32, 40]), None,
     "info.json: the images are 32x40; .* give --image-size"),
    (lambda info: info["features"]["observation.image"].update(shape=[3, 48, 48]), None,
     "file-000.parquet episode 0: 'observation.image' frame 0 is 32x32, but info.json says 48x48"),
    (None, times_three, r"file-000.parquet episode 0: the action at step 0 is outside \[-1, 1\].*'action'"),
    (None, drop_rows, "file-000.parquet episode 0: holds 11 frames .* length 12"),
])
def test_what_cannot_be_read_is_refused_naming_the_file_and_field(tmp_path, info_change, data_change, message):
    source = edit_fixture(tmp_path, info_change, data_change)
    with pytest.raises(DatasetError, match=message):
        lerobot.import_lerobot(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # a failed import leaves no dataset behind


def test_export_refuses_a_folder_that_exists_and_the_cli_says_so(two_episode_dataset, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    assert cli.main(["export-lerobot", str(two_episode_dataset), str(tmp_path / "taken")]) == 2
    assert "taken already exists" in capsys.readouterr().err
    assert cli.main(["import-lerobot", str(two_episode_dataset), "--out", str(tmp_path / "x")]) == 2
    assert "meta/info.json is missing" in capsys.readouterr().err
    assert cli.main(["export-lerobot", str(two_episode_dataset)]) == 2
    assert "needs DATASET (ours) and OUT" in capsys.readouterr().err


def test_an_export_that_fails_leaves_nothing_named_out(two_episode_dataset, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(two_episode_dataset, damaged)
    second = damaged / read_index(damaged)[1]["file"]
    second.write_bytes(second.read_bytes()[:100])
    with pytest.raises(DatasetError, match="000001.npz is unreadable or truncated"):
        lerobot.export_lerobot(damaged, tmp_path / "v3")
    assert not (tmp_path / "v3").exists() and not (tmp_path / "v3.partial").exists()
