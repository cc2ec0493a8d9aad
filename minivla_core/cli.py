"""The `minivla` command.

    minivla collect  --task push-v3 --episodes 100 --out data/push-v3
    minivla train    --dataset data/push-v3 --out runs/push-v3 [--resume runs/push-v3/last.pt]
    minivla eval     --checkpoint checkpoints/push_v3.pt --episodes 50 [--video-dir videos] [--json out.json]
    minivla info     --checkpoint checkpoints/push_v3.pt
    minivla run      --episodes 20          (the ROS 2 graph; see minivla_ros/bringup.py)
    minivla record   --episodes 100 --out bags/push    (expert demos through ROS, as a rosbag2 folder)
    minivla bag2data bags/push --out data/push-ros      (bags -> dataset)

Every command takes `--config FILE.yaml` (the schema in minivla_core/config.py); flags given on
the command line override the file. Bad input ends with one `error: ...` line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import time
from pathlib import Path

from minivla_core.config import IMAGE_ENCODERS, Config, load_config
from minivla_core.errors import MiniVLAError


def apply_overrides(config: Config, args: argparse.Namespace, mapping: dict[str, str]) -> None:
    """Copy each non-None flag value onto config ("section.field")."""
    for flag, target in mapping.items():
        value = getattr(args, flag, None)
        if value is not None:
            section, name = target.split(".")
            setattr(getattr(config, section), name, value)


def cmd_collect(config: Config, args) -> int:
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


def cmd_train(config: Config, args) -> int:
    from minivla_core.train import train

    result = train(config, resume=args.resume)
    print(f"trained in {result['seconds']:.1f} s; best validation loss {result['best_val']:.4f}; "
          f"checkpoints in {result['out_dir']}/best.pt and last.pt, curve in loss.png")
    return 0


def cmd_eval(config: Config, args) -> int:
    from minivla_core.evaluate import evaluate, write_json

    result = evaluate(config.eval, config.env, task=args.task, instruction=args.instruction,
                      inference_steps=args.inference_steps, n_action_steps=args.n_action_steps)
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


def cmd_run(config: Config, args) -> int:
    """The ROS graph (simulator bridge + policy node) for N episodes. Needs the ROS 2 set-up."""
    from minivla_core.envs.metaworld_env import check_task, instruction_for
    from minivla_core.model.tokenizer import check_instruction

    bringup = import_ros("minivla_ros.bringup", "run")
    task = check_task(args.task or "push-v3")
    overrides = {name: value for name, value in (
        ("policy.checkpoint", args.checkpoint), ("policy.control_rate", args.control_rate),
        ("policy.inference_steps", args.inference_steps), ("policy.n_action_steps", args.n_action_steps),
        ("env.seed", args.seed)) if value is not None}
    params = args.params_file or bringup.DEFAULT_PARAMS
    instruction = check_instruction(args.instruction or instruction_for(task))
    result = bringup.run(args.episodes, task, instruction, params, overrides)
    print(bringup.summarize(result))
    if args.json:
        bringup.write_json(result, args.json)
        print(f"results written to {args.json}")
    return 0


def cmd_record(config: Config, args) -> int:
    """Scripted-expert demonstrations through the ROS graph, recorded as a rosbag2 folder."""
    from minivla_core.envs.metaworld_env import check_task, instruction_for
    from minivla_core.model.tokenizer import check_instruction

    bringup = import_ros("minivla_ros.bringup", "record")
    task = check_task(args.task or "push-v3")
    if Path(args.out).exists():
        print(f"error: {args.out} already exists; choose a new bag folder", file=sys.stderr)
        return 2
    started = time.perf_counter()
    instruction = check_instruction(args.instruction or instruction_for(task))
    result = bringup.record(args.episodes, task, instruction, Path(args.out), args.storage, step_rate=args.step_rate)
    seconds = time.perf_counter() - started
    print(f"recorded {len(result.episodes)} episodes ({result.successes} successful) in {seconds:.1f} s -> {args.out}")
    return 0


def cmd_bag2data(config: Config, args) -> int:
    """Bags -> dataset folder (appending)."""
    bag2data = import_ros("minivla_ros.bag2data", "bag2data")
    summary = bag2data.convert(args.bags, args.out, keep_failed=args.keep_failed)
    print(f"{summary}\n-> {args.out}")
    return 0


def cmd_info(config: Config, args) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minivla", description="A tiny vision-language-action policy for Meta-World.")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str):
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--config", help="YAML file with any of the env/model/train/collect/eval sections")
        return p

    p = command("collect", "record successful scripted-expert episodes to a dataset folder")
    p.add_argument("--task")
    p.add_argument("--tasks", nargs="+", help="several tasks into one dataset")
    p.add_argument("--paraphrases", action="store_true", default=None,
                   help="label episodes with each task's training paraphrases in turn")
    p.add_argument("--episodes", type=int, help="successful episodes to keep per task (default 100)")
    p.add_argument("--steps-after-success", type=int,
                   help="keep recording the expert this many steps past its first success (default 0)")
    p.add_argument("--out", help="dataset folder; episodes are appended if it exists")
    p.add_argument("--seed", type=int, help="layout seed (default 0)")
    p.add_argument("--observation", choices=["proprio", "full"],
                   help="the state stored for the policy: proprio (hand position and gripper, default) or full "
                        "(privileged simulator state, for comparison)")
    p.add_argument("--camera")
    p.add_argument("--camera-position", type=float, nargs="*", metavar="XYZ",
                   help="camera x y z in metres (no numbers: the scene's own placement)")
    p.add_argument("--extra-cameras", nargs="*", metavar="CAMERA",
                   help="more views, one image each per step (e.g. gripperPOV, the camera in the gripper)")
    p.add_argument("--image-size", type=int)
    p.set_defaults(run=cmd_collect, overrides={"task": "env.task", "tasks": "collect.tasks", "paraphrases": "collect.paraphrases",
                                               "episodes": "collect.episodes", "out": "collect.out",
                                               "steps_after_success": "collect.steps_after_success",
                                               "seed": "env.seed", "observation": "env.observation",
                                               "camera": "env.camera", "camera_position": "env.camera_position",
                                               "extra_cameras": "env.extra_cameras", "image_size": "env.image_size"})

    p = command("train", "train a policy on a dataset folder")
    p.add_argument("--dataset")
    p.add_argument("--out", help="run folder for best.pt, last.pt, loss.png")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads (0 = torch default)")
    p.add_argument("--observation", choices=["proprio", "full"], help="must be the dataset's (default proprio)")
    p.add_argument("--image-size", type=int, help="must be the dataset's")
    p.add_argument("--extra-cameras", nargs="*", metavar="CAMERA", help="must be the dataset's")
    p.add_argument("--image-encoder", choices=IMAGE_ENCODERS)
    p.add_argument("--resume", help="continue from a last.pt")
    p.set_defaults(run=cmd_train, overrides={"dataset": "train.dataset", "out": "train.out_dir", "epochs": "train.epochs",
                                             "batch_size": "train.batch_size", "lr": "train.lr", "device": "train.device",
                                             "seed": "train.seed", "threads": "train.threads",
                                             "observation": "env.observation", "image_size": "env.image_size",
                                             "extra_cameras": "env.extra_cameras", "image_encoder": "model.image_encoder"})

    p = command("eval", "run closed-loop episodes on unseen layouts and report the success rate")
    p.add_argument("--checkpoint")
    p.add_argument("--task", help="one task (default: the checkpoint's task or tasks)")
    p.add_argument("--tasks", nargs="+", help="several tasks: a per-task table and the average")
    p.add_argument("--instruction", help="one instruction for every episode (default: see --instructions)")
    p.add_argument("--instructions", choices=["plain", "held_out", "other_task"],
                   help="each task's plain instruction (default), its held-out paraphrases, or another "
                        "task's instruction")
    p.add_argument("--episodes", type=int, help="per task")
    p.add_argument("--seed", type=int, help="layout seed (default 1000; collection uses 0)")
    p.add_argument("--inference-steps", type=int, help="DDIM steps (default: the checkpoint's)")
    p.add_argument("--n-action-steps", type=int, help="actions executed per chunk (default: the checkpoint's)")
    p.add_argument("--max-episode-steps", type=int)
    p.add_argument("--observation", choices=["proprio", "full"],
                   help="must be the checkpoint's: proprio (default) or full (privileged state, for comparison)")
    p.add_argument("--image-ablation", choices=["none", "black", "frozen", "shuffled"],
                   help="does it look? replace the camera image by a black one, the episode's first one, or "
                        "another layout's (default none)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1)")
    p.add_argument("--video-dir", help="write one mp4 per episode here")
    p.add_argument("--json", help="write the results here")
    p.set_defaults(run=cmd_eval, overrides={"checkpoint": "eval.checkpoint", "episodes": "eval.episodes",
                                            "tasks": "eval.tasks", "instructions": "eval.instructions",
                                            "seed": "eval.seed", "threads": "eval.threads",
                                            "video_dir": "eval.video_dir", "json": "eval.json",
                                            "max_episode_steps": "env.max_episode_steps",
                                            "observation": "env.observation", "image_ablation": "eval.image_ablation"})

    p = sub.add_parser("run", help="run the sim-plus-policy ROS graph for N episodes and report",
                       description="Start the simulator bridge and the policy node (as `ros2 launch minivla_ros "
                                   "sim_policy.launch.py` would), send the instruction, report N episodes.")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--task", help="default push-v3")
    p.add_argument("--instruction", help="default: the task's instruction")
    p.add_argument("--checkpoint")
    p.add_argument("--control-rate", type=float)
    p.add_argument("--inference-steps", type=int)
    p.add_argument("--n-action-steps", type=int)
    p.add_argument("--seed", type=int, help="layout seed (default 1000, as in config/sim_policy.yaml)")
    p.add_argument("--params-file", help="ROS parameter file (default config/sim_policy.yaml)")
    p.add_argument("--json", help="write the results here")
    p.set_defaults(run=cmd_run, overrides={}, config=None)

    p = sub.add_parser("record", help="record scripted-expert demonstrations through the ROS graph as a bag",
                       description="Start the simulator bridge, the scripted expert node and a recorder of the "
                                   "demonstration topics (see minivla_ros/bag_types.py); stop after N episodes.")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--task", help="default push-v3")
    p.add_argument("--instruction", help="default: the task's instruction")
    p.add_argument("--out", required=True, help="new rosbag2 folder")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--step-rate", type=float, help="simulator steps per second (default 20)")
    p.set_defaults(run=cmd_record, overrides={}, config=None)

    p = sub.add_parser("bag2data", help="convert demonstration bags into (or onto) a dataset folder",
                       description="Pair each action with the newest image and state before it, split episodes "
                                   "by episode_status, keep successful ones, append to the dataset.")
    p.add_argument("bags", nargs="+", help="rosbag2 folders (MCAP or sqlite3) or .mcap files")
    p.add_argument("--out", required=True, help="dataset folder (created, or appended to)")
    p.add_argument("--keep-failed", action="store_true", help="keep episodes that did not succeed")
    p.set_defaults(run=cmd_bag2data, overrides={}, config=None)

    p = command("info", "print what a checkpoint holds")
    p.add_argument("--checkpoint")
    p.set_defaults(run=cmd_info, overrides={"checkpoint": "eval.checkpoint"})
    return parser


def stop_on_sigterm(signum, frame):
    """SIGTERM (what `kill` and process managers send) ends a command as Ctrl-C does: `run` and `record`
    stop every node they started on the way out."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        config = load_config(args.config)
        apply_overrides(config, args, args.overrides)
        return args.run(config, args)
    except MiniVLAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
