"""Why the vision defaults are what they are: push-v3, 100 demos, one setting changed at a time.

For each variant it collects 100 scripted-expert demos (cached in --work by camera, image size
and observation protocol), trains with the defaults plus the variant's change, and evaluates on
50 unseen layouts (seed 1000) twice: with the real camera image and with a black one. A policy
that uses its camera collapses under the black image. These rows choose the defaults, so they run on a
validation seed by design (minivla_core/config.py SEED_ROLES): their success rates are validation figures.
Prints one table and merges the rows into bench/results/ablation.{md,json} (date, commit and machine per row),
so variants can be run in separate sessions:

    .venv/bin/python bench/bench_ablation.py                          # every variant (hours on 2 cores)
    .venv/bin/python bench/bench_ablation.py --variants default image64
    .venv/bin/python bench/bench_ablation.py --variants keypoints96 --threads 1 --note keypoints96="1 thread"
    .venv/bin/python bench/bench_ablation.py --variants default --checkpoint default=runs/push-v3/best.pt

Training time is wall-clock on this machine with nothing else running; success rates carry a 95%
Wilson interval.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_core import git_commit, machine, role_line  # noqa: E402
from minivla_core.checkpoint import read_checkpoint  # noqa: E402
from minivla_core.config import (  # noqa: E402
    VALIDATION_SEED, CollectConfig, Config, EvalConfig, observation_label)
from minivla_core.data.collect import collect  # noqa: E402
from minivla_core.evaluate import evaluate  # noqa: E402
from minivla_core.train import train  # noqa: E402

# name -> (what changes, config overrides "section.field": value)
VARIANTS = {
    "default": ("defaults: corner2 at LeRobot's placement, 128 px, TinyCNN (flattened map), no shift, proprio", {}),
    "image96": ("image size 96 px", {"env.image_size": 96}),
    "image64": ("image size 64 px", {"env.image_size": 64}),
    "keypoints64": ("64 px, encoder: keypoints (spatial softmax, 32 channels)",
                    {"env.image_size": 64, "model.image_encoder": "keypoints"}),
    "keypoints96": ("96 px, encoder: keypoints (spatial softmax, 32 channels)",
                    {"env.image_size": 96, "model.image_encoder": "keypoints"}),
    "scene_camera96": ("96 px, camera: corner2 at the scene's own (far) placement",
                       {"env.image_size": 96, "env.camera_position": []}),
    "image64_shift4": ("64 px, random shift of 4 px", {"env.image_size": 64, "train.image_shift": 4}),
    "image64_keypoints_shift4": ("64 px, keypoints, random shift of 4 px (the first try)",
                                 {"env.image_size": 64, "model.image_encoder": "keypoints", "train.image_shift": 4}),
    "full_state96": ("96 px, state: full, privileged (object poses and goal), for comparison",
                     {"env.image_size": 96, "env.observation": "full"}),
}


# Why rows are missing (printed under the table).
NOT_MEASURED = ("The keypoint encoder keeps a half-resolution feature map and trains far slower here (64 px: 1.8 s a "
                "step with an evaluation beside it, against 0.17 s for the flattened TinyCNN), over an hour for 60 "
                "epochs; a 64 px run of an earlier version (session 4, 4 px shift) no longer loads. An observation "
                "history (several past frames) is not implemented.")


def configure(overrides: dict) -> Config:
    config = Config()
    for target, value in overrides.items():
        section, name = target.split(".")
        setattr(getattr(config, section), name, value)
    return config


def dataset_for(config: Config, work: Path, episodes: int) -> Path:
    """Collected once per (observation, camera placement, image size)."""
    env = config.env
    placement = "x".join(f"{v:g}" for v in env.camera_position) or "scene"
    dataset = work / "data" / f"push_{env.observation}_{placement}_{env.image_size}px_{episodes}"
    if not (dataset / "meta.json").exists():
        collect(env, CollectConfig(out=str(dataset), episodes=episodes))
    return dataset


def run_variant(name: str, work: Path, episodes: int, eval_episodes: int, checkpoint: str | None,
                threads: int) -> dict:
    description, overrides = VARIANTS[name]
    config = configure(overrides)
    config.train.threads = threads
    row = {"variant": name, "description": description, "observation": observation_label(config.env.observation),
           "date": datetime.date.today().isoformat(), "commit": git_commit(), "machine": machine()}
    if checkpoint is None:
        config.train.dataset = str(dataset_for(config, work, episodes))
        config.train.out_dir = str(work / "runs" / name)
        started = time.perf_counter()
        trained = train(config)
        row["train_minutes"] = (time.perf_counter() - started) / 60
        row["epochs"] = config.train.epochs
        row["best_val_loss"] = trained["best_val"]
        checkpoint = str(Path(config.train.out_dir) / "best.pt")
    else:  # a given checkpoint: how long its training took, as it recorded (up to its best epoch)
        info = read_checkpoint(checkpoint)["info"]
        row["train_minutes"], row["epochs"] = info["seconds"] / 60, info["epoch"]
        row["train_note"] = "recorded in the checkpoint"
    row["checkpoint"] = checkpoint
    for ablation in ("none", "black"):
        config.eval = EvalConfig(checkpoint=checkpoint, episodes=eval_episodes, image_ablation=ablation,
                                 seed=VALIDATION_SEED)  # choosing: the validation layouts, never test ones
        result = evaluate(config.eval, config.env).only
        row[ablation] = {"successes": result.successes, "episodes": result.episodes, "ci95": list(result.ci95)}
        print(result.summary(), flush=True)
    return row


def render_table(rows: list[dict]) -> str:
    lines = ["# Vision ablation: push-v3, 100 demos, one change at a time", "",
             "Each row: `minivla collect` (100 demos, seed 0) with the row's camera/size/protocol, `minivla train` "
             "(defaults plus the row's change), `minivla eval` on 50 unseen layouts (seed 1000) with the real "
             "camera image and with a black one. Written by `bench/bench_ablation.py`.", "",
             f"{role_line(VALIDATION_SEED)} These rows chose the defaults.", "",
             "| variant | state | success, real image | success, black image | training | date, commit |",
             "| --- | --- | --- | --- | --- | --- |"]

    def rate(result: dict) -> str:
        low, high = result["ci95"]
        return (f"{result['successes']}/{result['episodes']} = {100 * result['successes'] / result['episodes']:.0f}% "
                f"({100 * low:.0f}-{100 * high:.0f}%)")

    for row in rows:
        minutes = f"{row['train_minutes']:.1f} min, {row['epochs']} epochs"
        if row.get("train_note"):
            minutes += f" ({row['train_note']})"
        lines.append(f"| {row['description']} | {row['observation']} | {rate(row['none'])} | {rate(row['black'])} | "
                     f"{minutes} | {row['date']}, {row['commit']} |")
    missing = [name for name in VARIANTS if name not in {row["variant"] for row in rows}]
    if missing:
        lines += ["", f"Defined in bench_ablation.py but not measured yet: {', '.join(missing)}. {NOT_MEASURED}"]
    machines = sorted({row["machine"] for row in rows})
    lines += ["", "Machine: " + "; ".join(machines)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--episodes", type=int, default=100, help="demos to collect")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--work", default=str(ROOT / "runs" / "ablation"), help="datasets and runs go here")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="VARIANT=PATH",
                        help="evaluate this checkpoint for the variant instead of training one")
    parser.add_argument("--note", action="append", default=[], metavar="VARIANT=TEXT",
                        help="how the variant's training time was measured, when not here (e.g. other jobs ran)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for training (0: torch's default, every core)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ablation"))
    args = parser.parse_args()

    given = dict(item.split("=", 1) for item in args.checkpoint)
    notes = dict(item.split("=", 1) for item in args.note)
    out = Path(args.out)
    stored = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {"rows": []}
    rows = {row["variant"]: row for row in stored["rows"]}
    for name in args.variants:
        rows[name] = run_variant(name, Path(args.work), args.episodes, args.eval_episodes, given.get(name),
                                 args.threads)
        if name in notes:
            rows[name]["train_note"] = notes[name]
        ordered = [rows[v] for v in VARIANTS if v in rows]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps({"rows": ordered}, indent=1) + "\n")
        out.with_suffix(".md").write_text(render_table(ordered) + "\n")
    print(render_table([rows[v] for v in VARIANTS if v in rows]))
    print(f"written: {out.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main()
