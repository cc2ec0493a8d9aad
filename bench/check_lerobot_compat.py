"""LeRobot's own code against our LeRobot v3.0 files, in a scratch environment that has LeRobot.

LeRobot pins torch < 2.12 and Python >= 3.12, so it cannot join this project's .venv: this script runs in a venv of
its own, outside the repository, and imports nothing of minivla (it reads our dataset's files with numpy).

    /root/.pyenv/versions/3.12.1/bin/python3.12 -m venv /tmp/lerobot_venv     # any Python >= 3.12
    /tmp/lerobot_venv/bin/python -m pip install "lerobot[dataset]"           # 0.6.1 when this was written
    # datasets of ours (in .venv), and their exports: two tasks; a second camera; a robot's (a 7-number state, a
    # 3-number twist without gripper, at 15 fps: random numbers written by our DatasetWriter)
    .venv/bin/minivla collect --tasks push-v3 reach-v3 --episodes 1 --image-size 32 --out /tmp/lr/ours
    .venv/bin/minivla collect --task push-v3 --episodes 1 --image-size 32 --extra-cameras gripperPOV \
        --out /tmp/lr/ours_pov
    .venv/bin/python -c "import numpy as np; from minivla_core.data.dataset import DatasetWriter; \
      r = np.random.default_rng(0); w = DatasetWriter('/tmp/lr/ours_robot', 32, 7, 3, 'robot'); \
      [w.append(r.integers(0, 256, (n, 32, 32, 3)), r.standard_normal((n, 7)), r.uniform(-1, 1, (n, 3)), \
      task='robot', instruction='wipe the table') for n in (20, 30)]"
    for name in ours ours_pov; do .venv/bin/minivla export-lerobot /tmp/lr/$name /tmp/lr/v3_$name; done
    .venv/bin/minivla export-lerobot /tmp/lr/ours_robot /tmp/lr/v3_ours_robot --fps 15
    # 1. our exports, loaded by LeRobot's LeRobotDataset, against our own files:
    /tmp/lerobot_venv/bin/python bench/check_lerobot_compat.py check-export --pair /tmp/lr/v3_ours /tmp/lr/ours 80 \
        --pair /tmp/lr/v3_ours_pov /tmp/lr/ours_pov 80 --pair /tmp/lr/v3_ours_robot /tmp/lr/ours_robot 15 \
        --out bench/results/lerobot_compat
    # 2. the test fixture, written by LeRobot's own writer (LeRobotDataset.create, add_frame, save_episode) in the
    #    layout of LeRobot's metaworld_mt50 from the frames of our dataset (the first --frames of each episode):
    /tmp/lerobot_venv/bin/python bench/check_lerobot_compat.py write-fixture /tmp/lr/ours test/data/lerobot_v3_small
    #    and the same frames as mp4 videos (AV1, LeRobot's default encoding):
    /tmp/lerobot_venv/bin/python bench/check_lerobot_compat.py write-fixture /tmp/lr/ours test/data/lerobot_v3_video \
        --videos

check-export checks, through LeRobot's public API: the metadata LeRobotDatasetMetadata reads (codebase_version,
fps, totals, features, tasks, stats); every frame of LeRobotDataset (image as LeRobot's (3, H, W) float tensor in
[0, 1], state, action, task string, indices) equals our episode files; a DataLoader batch; and action chunks through
delta_timestamps, as LeRobot's policies train on them. It writes OUT.json and OUT.md (one table per export).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np


def read_ours(root: Path) -> tuple[dict, list[dict], list[dict]]:
    """Our dataset's meta.json, index entries and episode arrays (numpy only)."""
    meta = json.loads((root / "meta.json").read_text())
    entries = [json.loads(line) for line in (root / "episodes.jsonl").read_text().splitlines() if line.strip()]
    episodes = []
    for entry in entries:
        with np.load(root / entry["file"]) as arrays:
            episodes.append({name: arrays[name] for name in arrays.files})
    return meta, entries, episodes


def check_export(export: Path, ours: Path, fps: int) -> dict:
    import torch
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    meta, entries, episodes = read_ours(ours)
    checks: dict[str, bool] = {}
    lerobot_meta = LeRobotDatasetMetadata("local/minivla_export", root=export)
    frames = sum(len(e["actions"]) for e in episodes)
    checks["metadata: codebase_version v3.0, totals, fps"] = (
        lerobot_meta.info.codebase_version == "v3.0" and lerobot_meta.total_episodes == len(entries)
        and lerobot_meta.total_frames == frames and lerobot_meta.fps == fps)
    cameras = ["observation.image"] + [f"observation.images.{camera}" for camera in meta["extra_cameras"]]
    arrays = ["images"] + [f"images_{camera}" for camera in meta["extra_cameras"]]  # our episode files' names
    checks["metadata: camera, state and action features"] = (
        lerobot_meta.camera_keys == cameras
        and tuple(lerobot_meta.shapes["observation.state"]) == (meta["state_dim"],)
        and tuple(lerobot_meta.shapes["action"]) == (meta["action_dim"],))
    checks["metadata: tasks are our instructions"] = (
        list(lerobot_meta.tasks.index) == list(dict.fromkeys(e["instruction"] for e in entries)))
    stats = lerobot_meta.stats
    all_actions = np.concatenate([e["actions"] for e in episodes])
    checks["stats.json: action min/max/mean as our actions"] = bool(
        np.allclose(stats["action"]["min"], all_actions.min(0)) and np.allclose(stats["action"]["max"],
                                                                               all_actions.max(0))
        and np.allclose(stats["action"]["mean"], all_actions.mean(0), atol=1e-6))
    checks["stats.json: image stats shaped (3, 1, 1) in [0, 1]"] = (
        np.asarray(stats["observation.image"]["mean"]).shape == (3, 1, 1)
        and 0 <= np.min(stats["observation.image"]["min"]) <= np.max(stats["observation.image"]["max"]) <= 1)

    dataset = LeRobotDataset("local/minivla_export", root=export)
    checks["LeRobotDataset: length = frames"] = len(dataset) == frames
    same = True
    index = 0
    for number, (entry, episode) in enumerate(zip(entries, episodes)):
        for t in range(len(episode["actions"])):
            item = dataset[index]
            for camera, name in zip(cameras, arrays):
                image = (item[camera].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                same &= bool(np.array_equal(image, episode[name][t]))
            same &= bool(np.array_equal(item["observation.state"].numpy(), episode["states"][t]))
            same &= bool(np.array_equal(item["action"].numpy(), episode["actions"][t]))
            same &= item["task"] == entry["instruction"]
            same &= int(item["episode_index"]) == number and int(item["frame_index"]) == t
            same &= int(item["index"]) == index
            index += 1
    checks["LeRobotDataset: every frame equals our episode files (image, state, action, task, indices)"] = same
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=16, shuffle=False)))
    checks["DataLoader: a batch of 16 (images (16, 3, H, W))"] = (
        tuple(batch["observation.image"].shape) == (16, 3, meta["image_size"], meta["image_size"]))
    horizon = 8
    chunked = LeRobotDataset("local/minivla_export", root=export,
                             delta_timestamps={"action": [t / fps for t in range(horizon)]})
    item = chunked[0]
    checks[f"delta_timestamps: an action chunk of {horizon} = our next {horizon} actions"] = bool(
        np.array_equal(item["action"].numpy(), episodes[0]["actions"][:horizon]))
    shapes = f"states {meta['state_dim']}, actions {meta['action_dim']}, cameras {len(cameras)}"
    return {"checks": {name: bool(ok) for name, ok in checks.items()}, "export": str(export), "ours": str(ours),
            "what": f"{len(entries)} episodes, {frames} frames ({', '.join(dict.fromkeys(e['task'] for e in entries))}"
                    f"; {shapes}; {meta['image_size']} px; {fps} fps)"}


def write_fixture(ours: Path, out: Path, frames: int, videos: bool) -> None:
    """Our episodes' first `frames` frames, written by LeRobot's writer in metaworld_mt50's layout (images as image
    features, or as mp4 videos in LeRobot's default encoding)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    metaworld_config = Path(__import__("lerobot.envs", fromlist=["x"]).__file__).parent / "metaworld_config.json"
    descriptions = json.loads(metaworld_config.read_text())["TASK_DESCRIPTIONS"]
    meta, entries, episodes = read_ours(ours)
    size = meta["image_size"]
    features = {  # as LeRobot's metaworld_mt50 declares them (its image channels first), at our image size
        "observation.image": {"dtype": "video" if videos else "image", "shape": (3, size, size),
                              "names": ["channels", "height", "width"]},
        "observation.state": {"dtype": "float32", "shape": (4,), "names": {"axes": None}},
        "action": {"dtype": "float32", "shape": (4,), "names": {"axes": ["x", "y", "z", "gripper"]}},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    }
    shutil.rmtree(out, ignore_errors=True)
    dataset = LeRobotDataset.create("local/lerobot_v3_small", fps=80, features=features, root=out,
                                    robot_type="metaworld", use_videos=videos)
    for entry, episode in zip(entries, episodes):
        steps = min(frames, len(episode["actions"]))
        for t in range(steps):
            last = t == steps - 1
            dataset.add_frame({"observation.image": episode["images"][t], "observation.state": episode["states"][t],
                               "action": episode["actions"][t], "next.reward": np.array([float(last)], np.float32),
                               "next.success": np.array([last and entry["task"] == "push-v3"]),
                               "task": descriptions[entry["task"]]})
        dataset.save_episode()
    dataset.finalize()
    print(f"wrote {out} ({sum(p.stat().st_size for p in out.rglob('*') if p.is_file()) / 1024:.0f} KB)")


def commit() -> str:
    """HEAD's short hash, and whether the files differ from it (the run measured the working tree)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
    return f"{head or 'unknown'}{' with uncommitted changes' if dirty else ''}"


def write_results(runs: list[dict], out: Path, argv: list[str]) -> None:
    result = {"runs": runs, "date": time.strftime("%Y-%m-%d"), "commit": commit(), "command": " ".join(argv),
              "lerobot": version("lerobot"), "torch": version("torch"), "python": platform.python_version()}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    checks = [ok for run in runs for ok in run["checks"].values()]
    lines = [f"# Our LeRobot v3.0 exports, loaded by LeRobot {result['lerobot']}",
             "",
             f"{result['date']}, commit {result['commit']}; LeRobot {result['lerobot']}, torch {result['torch']}, "
             f"Python {result['python']}, in a scratch venv (LeRobot cannot join .venv). Datasets of ours exported by "
             f"`minivla export-lerobot`, then read by LeRobot's `LeRobotDatasetMetadata` and `LeRobotDataset` and "
             f"compared with our own episode files. No success rate here: a format check.",
             "",
             f"Command: `{result['command']}` (the script's docstring says how to set up the venv and the datasets)",
             "",
             f"**{sum(checks)} of {len(checks)} checks pass.**"]
    for run in runs:
        lines += ["", f"## {run['what']}", "", "| check | result |", "| --- | --- |"]
        lines += [f"| {name} | {'pass' if ok else 'FAIL'} |" for name, ok in run["checks"].items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-export", help="load our exports with LeRobot and compare them with our files")
    check.add_argument("--pair", nargs=3, action="append", required=True, metavar=("EXPORT", "OURS", "FPS"),
                       help="an export, the dataset of ours it was written from, and its fps (repeatable)")
    check.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    fixture = sub.add_parser("write-fixture", help="write a small LeRobot dataset with LeRobot's own writer")
    fixture.add_argument("ours", type=Path)
    fixture.add_argument("out", type=Path)
    fixture.add_argument("--frames", type=int, default=12, help="frames kept of each episode")
    fixture.add_argument("--videos", action="store_true", help="images as mp4 videos (LeRobot's default codec)")
    args = parser.parse_args(argv)
    if args.command == "write-fixture":
        write_fixture(args.ours, args.out, args.frames, args.videos)
        return 0
    runs = [check_export(Path(export), Path(ours), int(fps)) for export, ours, fps in args.pair]
    for run in runs:
        print(run["what"])
        for name, ok in run["checks"].items():
            print(f"  {'pass' if ok else 'FAIL'}  {name}")
    if args.out:
        write_results(runs, args.out, ["bench/check_lerobot_compat.py", *(argv or sys.argv[1:])])
    return 0 if all(ok for run in runs for ok in run["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
