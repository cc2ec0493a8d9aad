"""The `minivla` command.

    minivla collect  --task push-v3 --episodes 100 --out data/push-v3
    minivla train    --dataset data/push-v3 --out runs/push-v3 [--resume runs/push-v3/last.pt]
    minivla eval     --checkpoint checkpoints/push_v3.pt --episodes 50 [--video-dir videos] [--json out.json]
    minivla info     --checkpoint checkpoints/push_v3.pt
    minivla run      --episodes 20          (the ROS 2 graph; see minivla_ros/bringup.py)
    minivla record   --episodes 100 --out bags/push    (expert demos through ROS, as a rosbag2 folder)
    minivla bag2data bags/push --out data/push-ros      (bags -> dataset)

Every command reads the one config schema (minivla_core/config.py): `--config FILE.yaml` first, then
`--set section.field=value` (any field, repeatable; the value is read as YAML), then the command's
named flags. Each named flag is a shortcut for one field (COMMANDS below): its type, choices and
help come from that field, so nothing is written twice. Bad input ends with one `error: ...` line
and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from minivla_core.config import (
    CHOICES, Config, check_timing, field_docs, field_of, list_item_type, load_config, read_config_file, set_value)
from minivla_core.errors import ConfigError, MiniVLAError


def cmd_collect(config: Config, given: dict) -> int:
    from minivla_core.data.collect import collect

    started = time.perf_counter()
    result = collect(config.env, config.collect)
    seconds = time.perf_counter() - started
    print(f"kept {result.kept} successful episodes ({result.steps} steps), dropped {result.dropped} failed "
          f"ones, in {seconds:.1f} s -> {config.collect.out}")
    if result.kept < result.wanted:
        print(f"error: only {result.kept} of {result.wanted} episodes succeeded", file=sys.stderr)
        return 1
    return 0


def cmd_train(config: Config, given: dict) -> int:
    from minivla_core.train import train

    result = train(config, resume=config.train.resume or None)
    print(f"trained in {result['seconds']:.1f} s; best validation loss {result['best_val']:.4f}; "
          f"checkpoints in {result['out_dir']}/best.pt and last.pt, curve in loss.png")
    return 0


def cmd_eval(config: Config, given: dict) -> int:
    from minivla_core.evaluate import evaluate, write_json

    result = evaluate(config.eval, config.env)
    print(result.summary())
    if config.eval.json:
        write_json(result, config.eval.json)
        print(f"results written to {config.eval.json}")
    return 0


def import_ros(module: str, command: str):
    """The ROS side, imported only by the commands that need it: the core never depends on ROS."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MiniVLAError(f"`minivla {command}` needs the ROS 2 side (rclpy, the minivla_ros messages, "
                           f"rosbags); run scripts/setup.sh first: {exc}") from exc


def node_settings(given: dict, sections: tuple[str, ...]) -> dict:
    """The fields of the nodes' sections that the user set (in --config, --set or a flag), as "section.field":
    they override the ROS parameter file; everything else keeps the file's value."""
    return {f"{section}.{name}": value for section in sections for name, value in given.get(section, {}).items()}


def cmd_run(config: Config, given: dict) -> int:
    """The ROS graph (simulator bridge + policy node) for N episodes. Needs the ROS 2 set-up."""
    from minivla_core.envs import check_sim_task, sim_instruction
    from minivla_core.model.tokenizer import check_instruction

    task = check_sim_task(config.env.task)
    instruction = check_instruction(config.policy_node.instruction or sim_instruction(task))
    overrides = node_settings(given, ("env", "bridge", "policy_node", "robot"))
    overrides.pop("policy_node.instruction", None)  # sent on the instruction topic, as a user would
    timing = check_timing(config.run.timing, "run.timing")  # both nodes run with the same timing
    for section in ("bridge", "policy_node"):
        if overrides.get(f"{section}.timing", timing) != timing:
            raise ConfigError(f"{section}.timing {overrides[f'{section}.timing']!r} differs from run.timing "
                              f"{timing!r}: `minivla run` gives both nodes run.timing; set that instead")
        overrides[f"{section}.timing"] = timing
    bringup = import_ros("minivla_ros.bringup", "run")
    params = config.run.params_file or bringup.DEFAULT_PARAMS
    result = bringup.run(config.run.episodes, task, instruction, params, overrides)
    print(bringup.summarize(result))
    if config.run.json:
        bringup.write_json(result, config.run.json)
        print(f"results written to {config.run.json}")
    return 0


def cmd_record(config: Config, given: dict) -> int:
    """Scripted-expert demonstrations through the ROS graph, recorded as a rosbag2 folder."""
    from minivla_core.envs import check_sim_task, sim_instruction
    from minivla_core.model.tokenizer import check_instruction

    bringup = import_ros("minivla_ros.bringup", "record")
    task = check_sim_task(config.env.task)
    out = Path(config.recorder.out)
    if out.exists():
        raise ConfigError(f"{out} already exists; choose a new bag folder")
    started = time.perf_counter()
    instruction = check_instruction(config.recorder.instruction or sim_instruction(task))
    params = config.run.params_file or bringup.DEFAULT_PARAMS
    overrides = node_settings(given, ("env", "bridge", "expert", "recorder", "robot"))
    result = bringup.record(config.run.episodes, task, instruction, out, config.recorder.storage, params,
                            config.bridge.step_rate, overrides=overrides)
    seconds = time.perf_counter() - started
    print(f"recorded {len(result.episodes)} episodes ({result.successes} successful) in {seconds:.1f} s -> {out}")
    return 0


def cmd_bag2data(config: Config, given: dict) -> int:
    """Bags -> dataset folder (appending)."""
    bag2data = import_ros("minivla_ros.bag2data", "bag2data")
    if not config.bag2data.bags:
        raise ConfigError("no bags given: name them (minivla bag2data BAG... --out DATASET) or set bag2data.bags")
    if config.bag2data.robot or "robot" in given:  # any robot's bags, through a `robot` section: --robot FILE's,
        robot_bags = import_ros("minivla_ros.robot_bags", "bag2data")  # else the one of --config / --set
        robot = load_config(config.bag2data.robot).robot if config.bag2data.robot else config.robot
        summary = robot_bags.convert_robot_bags(config.bag2data.bags, config.bag2data.out, robot, config.bag2data,
                                                config.env.image_size)
    else:
        summary = bag2data.convert(config.bag2data.bags, config.bag2data.out, keep_failed=config.bag2data.keep_failed)
    print(f"{summary}\n-> {config.bag2data.out}")
    return 0


def cmd_teleop(config: Config, given: dict) -> int:
    """The keyboard teleop node in this terminal, publishing to the graph of ROS_DOMAIN_ID."""
    bringup = import_ros("minivla_ros.bringup", "teleop")
    if "ROS_DOMAIN_ID" not in os.environ:
        print("note: ROS_DOMAIN_ID is not set, so teleop gets a domain of its own and drives nothing; give it the "
              "graph's (`minivla run` and `minivla record` print theirs): ROS_DOMAIN_ID=N minivla teleop",
              file=sys.stderr)
    command = bringup.node_command("teleop", bringup.DEFAULT_PARAMS, node_settings(given, ("teleop",)))
    return subprocess.run(command, env=bringup.ros_environment(), cwd=bringup.ROOT).returncode


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


# Each command: what it does, and its named flags, flag -> the config field it sets.
COMMANDS = {
    "collect": (cmd_collect, "record successful scripted-expert episodes to a dataset folder", {
        "--task": "env.task", "--tasks": "collect.tasks", "--paraphrases": "collect.paraphrases",
        "--episodes": "collect.episodes", "--steps-after-success": "collect.steps_after_success",
        "--out": "collect.out", "--seed": "env.seed", "--observation": "env.observation", "--camera": "env.camera",
        "--camera-position": "env.camera_position", "--extra-cameras": "env.extra_cameras",
        "--image-size": "env.image_size"}),
    "train": (cmd_train, "train a policy on a dataset folder", {
        "--dataset": "train.dataset", "--out": "train.out_dir", "--epochs": "train.epochs",
        "--batch-size": "train.batch_size", "--lr": "train.lr", "--device": "train.device", "--seed": "train.seed",
        "--threads": "train.threads", "--resume": "train.resume", "--observation": "env.observation",
        "--image-size": "env.image_size", "--extra-cameras": "env.extra_cameras",
        "--image-encoder": "model.image_encoder"}),
    "eval": (cmd_eval, "run closed-loop episodes on unseen layouts and report the success rate", {
        "--checkpoint": "eval.checkpoint", "--tasks": "eval.tasks", "--instruction": "eval.instruction",
        "--instructions": "eval.instructions", "--episodes": "eval.episodes", "--seed": "eval.seed",
        "--noise-seed": "eval.noise_seed", "--inference-steps": "eval.inference_steps",
        "--n-action-steps": "eval.n_action_steps",
        "--max-episode-steps": "env.max_episode_steps", "--observation": "env.observation",
        "--image-ablation": "eval.image_ablation", "--threads": "eval.threads", "--video-dir": "eval.video_dir",
        "--json": "eval.json", "--latency": "eval.latency", "--step-rate": "eval.step_rate",
        "--seam": "eval.seam"}),
    "info": (cmd_info, "print what a checkpoint holds", {"--checkpoint": "eval.checkpoint"}),
    "teleop": (cmd_teleop, "drive the arm from the keyboard (TwistStamped on cmd_vel, gripper on gripper_command) "
               "in a running graph: ROS_DOMAIN_ID=N minivla teleop", {"--speed": "teleop.speed"}),
    "run": (cmd_run, "run the sim-plus-policy ROS graph (as `ros2 launch minivla_ros sim_policy.launch.py` "
            "would), send the instruction, report N episodes", {
                "--episodes": "run.episodes", "--task": "env.task", "--instruction": "policy_node.instruction",
                "--checkpoint": "policy_node.checkpoint", "--control-rate": "policy_node.control_rate",
                "--inference-steps": "policy_node.inference_steps",
                "--n-action-steps": "policy_node.n_action_steps", "--seed": "env.seed",
                "--params-file": "run.params_file", "--json": "run.json"}),
    "record": (cmd_record, "record scripted-expert demonstrations through the ROS graph as a rosbag2 folder "
               "(the topics of minivla_ros/graph.py's RECORDED); stop after N episodes", {
                   "--episodes": "run.episodes", "--task": "env.task", "--instruction": "recorder.instruction",
                   "--out": "recorder.out", "--storage": "recorder.storage", "--step-rate": "bridge.step_rate",
                   "--params-file": "run.params_file"}),
    "bag2data": (cmd_bag2data, "convert demonstration bags into (or onto) a dataset folder: pair each action "
                 "with the newest image and state before it, split episodes by episode_status, keep successful "
                 "ones, append; with --robot, any robot's bags through its robot interface, resampled",
                 {"bags": "bag2data.bags", "--out": "bag2data.out", "--keep-failed": "bag2data.keep_failed",
                  "--robot": "bag2data.robot", "--rate": "bag2data.rate", "--instruction": "bag2data.instruction",
                  "--image-size": "env.image_size"}),
}
ALIASES = {"eval.tasks": ["--task"]}  # eval --task push-v3 reads as well as --tasks push-v3 reach-v3


def add_shortcut(parser: argparse.ArgumentParser, flag: str, path: str, docs: dict[str, str]) -> None:
    """One named flag for one config field, typed from the field. Unset flags stay None (no override)."""
    field, default = field_of(path)
    shown = f"{default!r}" if default not in ("", []) else "empty"
    options = {"help": f"{docs[path]} [{path}; default {shown}]".replace("%", "%%"), "default": None,
               "dest": path}
    if isinstance(default, bool):
        options["action"] = argparse.BooleanOptionalAction
    elif isinstance(default, list):
        options.update(nargs="*", type=list_item_type(field), metavar=field.name.upper())
    else:
        options.update(type=type(default), choices=CHOICES.get(path),
                       metavar=None if path in CHOICES else field.name.upper())
    if not flag.startswith("-"):  # a positional argument
        options.pop("dest")
        options.update(nargs="*")
        parser.add_argument(path, **options)
        return
    parser.add_argument(flag, *ALIASES.get(path, []), **options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minivla", description="A tiny vision-language-action policy for Meta-World.")
    sub = parser.add_subparsers(dest="command", required=True)
    docs = field_docs()
    for name, (run, help, shortcuts) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--config", help="YAML file with any sections of the schema (minivla_core/config.py)")
        p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                       help="set any config field, e.g. --set model.d_model=256 (repeatable; the value is YAML)")
        for flag, path in shortcuts.items():
            add_shortcut(p, flag, path, docs)
        p.set_defaults(run=run, shortcuts=shortcuts)
    return parser


def read_settings(args: argparse.Namespace) -> dict:
    """The settings the user gave, as a nested mapping: the --config file, then --set, then named flags."""
    given = read_config_file(args.config) if args.config else {}
    for setting in args.set:
        path, equals, text = setting.partition("=")
        if not equals:
            raise ConfigError(f"--set {setting!r}: expected SECTION.FIELD=VALUE, e.g. --set train.epochs=30")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {setting!r}: the value is not valid YAML: {exc}") from exc
        set_value(given, path.strip(), text if value is None else value)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        given = read_settings(args)
        return args.run(Config.from_dict(given), given)
    except MiniVLAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
