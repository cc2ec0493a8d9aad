"""The `minivla` command.

    minivla collect  --task push-v3 --episodes 100 --out data/push-v3
    minivla train    --dataset data/push-v3 --out runs/push-v3 [--resume runs/push-v3/last.pt]
    minivla eval     --checkpoint checkpoints/push_v3.pt --episodes 50 [--video-dir videos] [--json out.json]
    minivla eval     --checkpoint runs/mt50/best.pt --suite mt50 --seed 2000 --json mt50.json   # + mt50.md
    minivla info     --checkpoint checkpoints/push_v3.pt
    minivla export-lerobot data/push-v3 lerobot/push-v3          (our dataset -> LeRobot dataset v3.0)
    minivla import-lerobot lerobot/metaworld_mt50 --out data/mt50 [--image-size 128]

These are the core's commands; the ROS side adds its own (run, record, bag2data, teleop: minivla_ros/cli.py)
through minivla.py, the `minivla` entry point, so this module never imports ROS. `python -m minivla_core.cli`
offers the core's commands alone.

Every command reads the one config schema (minivla_core/config.py): `--config FILE.yaml` first, then
`--set section.field=value` (any field, repeatable; the value is read as YAML and checked against its field
by config.value_from_text, so 1e9 is a float), then the command's named flags. Each named flag is a shortcut
for one field (Command.shortcuts): its type, choices and help come from that field, so nothing is written twice.
Bad input ends with one `error: ...` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import textwrap
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

from minivla_core.config import (
    CHOICES, Config, check_seed_role, field_docs, field_of, list_item_type, read_config_file, set_value,
    value_from_text)
from minivla_core.errors import ConfigError, MiniVLAError


@dataclass(frozen=True)
class Command:
    """One subcommand: run(config, settings the user gave) -> exit status, and its named flags."""

    run: Callable[[Config, dict], int] | None
    help: str  # one line in `minivla --help`; also the description under `minivla COMMAND --help`, unless:
    shortcuts: dict[str, str]  # flag -> the config field it sets ("bags": a positional argument)
    description: str = ""  # the longer text of `minivla COMMAND --help`, laid out as written
    # field -> the default this command uses where it is not the schema's (shown in --help as it is given)
    defaults: dict[str, str] = field(default_factory=dict)
    # field -> what this command does with it, where the field's own comment in config.py is not what happens here
    field_help: dict[str, str] = field(default_factory=dict)
    unavailable: str = ""  # why this command cannot run in this installation (it says so when run)


def cmd_collect(config: Config, given: dict) -> int:
    from minivla_core.data.collect import collect

    check_seed_role(config.env.seed, "collection", "env.seed")  # never the layouts that choose or report
    result = collect(config.env, config.collect)
    if len(result.tasks) > 1 or result.dropped:  # which experts failed, and how often
        print(f"{'task':<30} {'kept':>5} {'dropped':>8} {'steps':>7}")
        for task, row in result.tasks.items():
            print(f"{task:<30} {row.kept:>5} {row.dropped:>8} {row.steps:>7}")
    print(f"kept {result.kept} successful episodes ({result.steps} steps), dropped {result.dropped} failed "
          f"ones, in {result.seconds:.1f} s -> {config.collect.out}")
    short = [f"{task} ({row.kept} of {row.wanted})" for task, row in result.tasks.items() if row.kept < row.wanted]
    if short:
        print(f"error: the expert succeeded too rarely on {', '.join(short)}; raise collect.max_attempts_factor "
              f"or run again to try more layouts", file=sys.stderr)
        return 1
    return 0


def cmd_train(config: Config, given: dict) -> int:
    from minivla_core.train import train

    result = train(config, resume=config.train.resume or None)
    best = f"best.pt: epoch {result['best_epoch']}, {result['chosen_on']} {result['best_loss']:.4f}"
    print(f"trained in {result['seconds']:.1f} s; {best}; checkpoints in {result['out_dir']}/best.pt and last.pt, "
          f"curve in loss.png")
    if result["note"]:
        print(f"note: {result['note']}")
    return 0


def cmd_eval(config: Config, given: dict) -> int:
    from minivla_core.envs.metaworld_suites import PROTOCOL
    from minivla_core.evaluate import evaluate, write_json
    from minivla_core.view import PolicyView, ViewerServer

    if config.eval.suite and "episodes" not in given.get("eval", {}):
        config.eval.episodes = PROTOCOL["episodes"]  # a suite's protocol runs 10 episodes per task
    with ViewerServer(config.eval.view_port) if config.eval.view else nullcontext() as server:
        view = PolicyView.for_eval(config.eval, server)  # eval.view, eval.view_save; else it does nothing
        try:
            result = evaluate(config.eval, config.env, view=view)
        finally:
            view.close()
        print(result.summary())
        if config.eval.json:
            written = write_json(result, config.eval.json)
            print(f"results written to {' and '.join(map(str, written))}")
        if server:
            server.wait()  # until Ctrl-C, so the page can still be read
    return 0


def cmd_info(config: Config, given: dict) -> int:
    from minivla_core.checkpoint import read_checkpoint
    from minivla_core.config import observation_label

    payload = read_checkpoint(config.eval.checkpoint)
    env = payload["env"]
    position = env["camera_position"] or "the scene's own placement"
    extra = f" and {', '.join(env['extra_cameras'])}" if env["extra_cameras"] else ""
    print(f"observation: {observation_label(env['observation'])}, state of {payload['state_dim']} numbers; "
          f"camera {env['camera']} at {position}{extra}, {env['image_size']}x{env['image_size']} images")
    shown = {k: payload[k] for k in ("env", "state_dim", "action_dim", "model_config", "vocab", "info")}
    print(json.dumps(shown, indent=1, default=str))
    return 0


def cmd_export_lerobot(config: Config, given: dict) -> int:
    from minivla_core.data.lerobot import export_lerobot

    lerobot = config.lerobot
    if not (lerobot.dataset and lerobot.lerobot_dataset):
        raise ConfigError("export-lerobot needs DATASET (ours) and OUT (the LeRobot dataset to write)")
    print(export_lerobot(lerobot.dataset, lerobot.lerobot_dataset, fps=lerobot.fps).text())
    return 0


def cmd_import_lerobot(config: Config, given: dict) -> int:
    from minivla_core.data.lerobot import import_lerobot

    lerobot, env = config.lerobot, given.get("env", {})
    if not (lerobot.lerobot_dataset and lerobot.dataset):
        raise ConfigError("import-lerobot needs PATH (a LeRobot dataset v3.0) and --out DATASET (ours)")
    summary = import_lerobot(lerobot.lerobot_dataset, lerobot.dataset,  # the env fields only where the user gave them
                             size=config.env.image_size if "image_size" in env else None,
                             task=config.env.task if "task" in env else None,
                             observation=config.env.observation if "observation" in env else None)
    print(summary.text())
    return 0


# The core's commands: what each does, and its named flags, flag -> the config field it sets.
COMMANDS = {
    "collect": Command(cmd_collect, "record successful scripted-expert episodes to a dataset folder", {
        "--task": "env.task", "--tasks": "collect.tasks", "--paraphrases": "collect.paraphrases",
        "--lerobot-descriptions": "collect.lerobot_descriptions", "--workers": "collect.workers",
        "--episodes": "collect.episodes", "--steps-after-success": "collect.steps_after_success",
        "--out": "collect.out", "--seed": "env.seed", "--observation": "env.observation", "--camera": "env.camera",
        "--camera-position": "env.camera_position", "--extra-cameras": "env.extra_cameras",
        "--image-size": "env.image_size"},
        field_help={"env.task": "a Meta-World v3 task: collect runs Meta-World's scripted experts (Fetch "
                                "demonstrations: `minivla record --config config/fetch.yaml`)"}),
    "train": Command(cmd_train, "train a policy on a dataset folder", {
        "--dataset": "train.dataset", "--out": "train.out_dir", "--epochs": "train.epochs",
        "--batch-size": "train.batch_size", "--lr": "train.lr", "--device": "train.device", "--seed": "train.seed",
        "--threads": "train.threads", "--resume": "train.resume", "--compile": "train.compile",
        "--observation": "env.observation",
        "--image-size": "env.image_size", "--extra-cameras": "env.extra_cameras",
        "--image-encoder": "model.image_encoder"}),
    "eval": Command(cmd_eval, "run closed-loop episodes on unseen layouts and report the success rate", {
        "--checkpoint": "eval.checkpoint", "--tasks": "eval.tasks", "--instruction": "eval.instruction",
        "--instructions": "eval.instructions", "--episodes": "eval.episodes", "--seed": "eval.seed",
        "--noise-seed": "eval.noise_seed", "--inference-steps": "eval.inference_steps",
        "--n-action-steps": "eval.n_action_steps",
        "--max-episode-steps": "env.max_episode_steps", "--observation": "env.observation",
        "--image-ablation": "eval.image_ablation", "--threads": "eval.threads", "--workers": "eval.workers",
        "--video-dir": "eval.video_dir",
        "--json": "eval.json", "--latency": "eval.latency", "--step-rate": "eval.step_rate",
        "--seam": "eval.seam", "--suite": "eval.suite", "--view": "eval.view", "--view-save": "eval.view_save",
        "--view-port": "eval.view_port"},
        defaults={"eval.episodes": "50; with --suite, the protocol's 10"},
        field_help={"env.observation": "the observation protocol the checkpoint was trained on, checked against it, so "
                                       "that a checkpoint of privileged state runs only when asked for by name: "
                                       "\"proprio\", \"full\" or \"robot\""}),
    "info": Command(cmd_info, "print what a checkpoint holds", {"--checkpoint": "eval.checkpoint"}),
    "export-lerobot": Command(cmd_export_lerobot, "write a dataset folder as a LeRobot dataset v3.0 (docs/lerobot.md)",
                              {"dataset": "lerobot.dataset", "out": "lerobot.lerobot_dataset", "--fps": "lerobot.fps"}),
    "import-lerobot": Command(
        cmd_import_lerobot, "append a LeRobot dataset v3.0's episodes to a dataset folder (docs/lerobot.md)", {
            "path": "lerobot.lerobot_dataset", "--out": "lerobot.dataset", "--image-size": "env.image_size",
            "--task": "env.task", "--observation": "env.observation"},
        defaults={"env.image_size": "the LeRobot images' own size, if square",
                  "env.task": "each episode's LeRobot task string",
                  "env.observation": "proprio for a metaworld dataset of 4-number states, full for 39, else robot"},
        field_help={"env.image_size": "the images' side in the dataset: the LeRobot images are cropped to their "
                                      "centred square and resized to it",
                    "env.task": "the task name every imported episode gets (their instructions stay the LeRobot "
                                "task strings)",
                    "env.observation": "what the LeRobot dataset's observation.state holds"}),
}
ALIASES = {"eval.tasks": ["--task"]}  # eval --task push-v3 reads as well as --tasks push-v3 reach-v3


def add_shortcut(parser: argparse.ArgumentParser, flag: str, path: str, command: Command,
                 docs: dict[str, str]) -> None:
    """One named flag for one config field, typed from the field. Unset flags stay None (no override)."""
    declared, default = field_of(path)
    shown = command.defaults.get(path, f"{default!r}" if default not in ("", []) else "empty")
    doc = command.field_help.get(path, docs[path])
    options = {"help": f"{doc} [{path}; default {shown}]".replace("%", "%%"), "default": None, "dest": path}
    if isinstance(default, bool):
        options["action"] = argparse.BooleanOptionalAction
    elif isinstance(default, list):
        options.update(nargs="*", type=list_item_type(declared), metavar=declared.name.upper())
    else:
        options.update(type=type(default), choices=CHOICES.get(path),
                       metavar=None if path in CHOICES else declared.name.upper())
    if not flag.startswith("-"):  # a positional argument: a list takes any number, one value one (or none: --set)
        options.pop("dest")
        options.update(nargs="*" if isinstance(default, list) else "?", metavar=flag.upper())
        parser.add_argument(path, **options)
        return
    parser.add_argument(flag, *ALIASES.get(path, []), **options)


def build_parser(commands: dict[str, Command] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minivla", description="A tiny vision-language-action policy: train and "
                                     "evaluate it in simulation (Meta-World, Fetch), run it through ROS 2.")
    sub = parser.add_subparsers(dest="command", required=True)
    docs = field_docs()
    for name, command in commands.items():
        description = command.description or textwrap.fill(command.help, 100)
        p = sub.add_parser(name, help=command.help, description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(command_spec=command, shortcuts=command.shortcuts)
        if command.unavailable:  # no flags: main() lets it take any, and says why it cannot run
            continue
        p.add_argument("--config", help="YAML file with any sections of the schema (minivla_core/config.py)")
        p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                       help="set any config field, e.g. --set model.d_model=256 (repeatable; the value is YAML)")
        for flag, path in command.shortcuts.items():
            add_shortcut(p, flag, path, command, docs)
    return parser


def read_settings(args: argparse.Namespace) -> dict:
    """The settings the user gave, as a nested mapping: the --config file, then --set, then named flags."""
    given = read_config_file(args.config) if args.config else {}
    for setting in args.set:
        path, equals, text = setting.partition("=")
        if not equals:
            raise ConfigError(f"--set {setting!r}: expected SECTION.FIELD=VALUE, e.g. --set train.epochs=30")
        try:
            set_value(given, path.strip(), value_from_text(path.strip(), text))
        except ConfigError as exc:
            raise ConfigError(f"--set {setting!r}: {exc}") from None
    for flag, path in args.shortcuts.items():
        value = getattr(args, path)
        positional = not flag.startswith("-")  # given nothing, it reads as [], which is no setting
        if value is not None and not (positional and value == []):  # but `--camera-position` alone means []
            set_value(given, path, value)
    return given


def stop_on_sigterm(signum, frame):
    """SIGTERM (what `kill` and process managers send) ends a command as Ctrl-C does: `run` and `record`
    stop every node they started on the way out."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None, commands: dict[str, Command] = COMMANDS) -> int:
    """Run one command of `commands` (the core's alone, or minivla.py's core-plus-ROS table)."""
    parser = build_parser(commands)
    args, unknown = parser.parse_known_args(argv)
    if unknown and not args.command_spec.unavailable:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        if args.command_spec.unavailable:
            raise MiniVLAError(f"`minivla {args.command}` {args.command_spec.unavailable}")
        given = read_settings(args)
        return args.command_spec.run(Config.from_dict(given), given)
    except MiniVLAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
