"""The `minivla` commands that start or read the ROS side: run, policy, record, bag2data, teleop, params.

minivla.py adds them to the core's commands (minivla_core/cli.py builds the parser from both tables), so the
core never imports ROS. Importing this module needs neither rclpy nor rosbags: each command imports what it
needs when it runs, and says what to install if that is missing. `bag2data` needs rosbags only, not rclpy.

`run` and `record` start nodes with a ROS parameter file (config/sim_policy.yaml unless --params-file): a node
setting the user gives (--config, --set or a flag) overrides the file, every other one keeps the file's value.
So the defaults their --help shows for node settings are the file's, not the schema's (e.g. env.seed 1000:
evaluation layouts). `policy` starts the policy node alone, against a robot that runs already, with the policy_node
and robot sections of --config / --set / its flags (the schema's defaults elsewhere), written as a ROS parameter
file the way `params` prints one.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import time
from contextlib import nullcontext
from pathlib import Path

import yaml

from minivla_core.cli import Command
from minivla_core.config import Config, RunConfig, read_config_file
from minivla_core.errors import ConfigError, MiniVLAError
from minivla_ros import graph


def import_ros(module: str, command: str):
    """A module of the ROS side, imported only by the command that runs now."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        needs = "rosbags" if command == "bag2data" else "rclpy and the minivla_ros messages"
        raise MiniVLAError(f"`minivla {command}` needs the ROS 2 side ({needs}), which cannot be imported: {exc}. "
                           f"Install it with `bash scripts/setup.sh` (or build this package with colcon and "
                           f"source its install/setup.bash)") from exc


def node_settings(given: dict, sections: tuple[str, ...]) -> dict:
    """The fields of the nodes' sections that the user set (in --config, --set or a flag), as "section.field":
    they override the ROS parameter file; everything else keeps the file's value."""
    return {f"{section}.{name}": value for section in sections for name, value in given.get(section, {}).items()}


def cmd_run(config: Config, given: dict) -> int:
    """The ROS graph (simulator bridge + policy node) for N episodes. Needs the ROS 2 set-up."""
    from minivla_core.envs import check_sim_task, sim_instruction
    from minivla_core.model.tokenizer import check_instruction
    from minivla_core.view import ViewerServer

    task = check_sim_task(config.env.task)
    instruction = check_instruction(config.policy_node.instruction or sim_instruction(task))
    overrides = node_settings(given, ("env", "bridge", "policy_node", "robot"))
    overrides.pop("policy_node.instruction", None)  # sent on the instruction topic, as a user would
    timing = config.run.timing  # (checked by the schema) both nodes run with the same timing
    for section in ("bridge", "policy_node"):
        if overrides.get(f"{section}.timing", timing) != timing:
            raise ConfigError(f"{section}.timing {overrides[f'{section}.timing']!r} differs from run.timing "
                              f"{timing!r}: `minivla run` gives both nodes run.timing; set that instead")
        overrides[f"{section}.timing"] = timing
    if overrides.get("policy_node.view_save"):  # the nodes run in the repository root, the user is elsewhere
        overrides["policy_node.view_save"] = str(Path(overrides["policy_node.view_save"]).resolve())
    bringup = import_ros("minivla_ros.bringup", "run")
    params = config.run.params_file or graph.PARAMS_FILE
    # The viewer outlives the nodes: this process serves it, the policy node streams to it.
    with ViewerServer(config.run.view_port, "run.view_port") if config.run.view else nullcontext() as server:
        if server:
            overrides["policy_node.view_url"] = server.uri
        result = bringup.run(config.run.episodes, task, instruction, params, overrides)
        print(bringup.summarize(result))
        if config.run.json:
            bringup.write_json(result, config.run.json)
            print(f"results written to {config.run.json}")
        if server:
            server.wait()  # until Ctrl-C, so the page can still be read
    return 0


def commanded_task(config: Config, given: dict) -> tuple[str, str] | None:
    """The task a robot's config file says its robot does, and the setting that says it: env.task, else bag2data.task
    (the task its bags' episodes got, which a checkpoint trained on them records); None where neither is set."""
    for section in ("env", "bag2data"):
        if "task" in (given.get(section) or {}):
            return getattr(config, section).task, f"{section}.task"
    return None


def cmd_policy(config: Config, given: dict) -> int:
    """The policy node alone, against a running robot, from the robot's config file; until Ctrl-C (exit 0)."""
    from minivla_core.checkpoint import read_checkpoint, untrained_task_warning

    bringup = import_ros("minivla_ros.bringup", "policy")
    checkpoint = Path(config.policy_node.checkpoint)
    if not checkpoint.is_absolute() and checkpoint.exists():  # from the user's working directory first: the node
        config.policy_node.checkpoint = str(checkpoint.resolve())  # runs in the repository root
    # A checkpoint that cannot be read is one error line here, not a node left waiting without a policy.
    trained = read_checkpoint(graph.resolve_path(config.policy_node.checkpoint, bringup.ROOT))["env"]
    commanded = commanded_task(config, given)
    warning = untrained_task_warning(config.policy_node.checkpoint, trained, *commanded) if commanded else None
    if warning:
        print(warning, file=sys.stderr, flush=True)
    bringup.serve_policy(graph.ros_parameters(config, ["policy_node"]))
    return 0


def cmd_params(config: Config, given: dict) -> int:
    """A minivla config file as a ROS 2 parameter file (for --ros-args --params-file), on stdout."""
    nodes = [node for node in graph.NODES
             if any(section in given for section, users in graph.SECTION_NODES.items() if node in users)]
    text = yaml.safe_dump(graph.ros_parameters(config, nodes or list(graph.NODES)), sort_keys=False)
    print("# ROS 2 parameters written by `minivla params` from a minivla config: every field of each node's config\n"
          "# sections (minivla_core/config.py), e.g. for\n"
          "#   ros2 run minivla_ros policy_node --ros-args --params-file THIS_FILE\n" + text, end="")
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
    params = config.run.params_file or graph.PARAMS_FILE
    overrides = node_settings(given, ("env", "bridge", "expert", "recorder", "robot"))
    result = bringup.record(config.run.episodes, task, instruction, out, config.recorder.storage, params,
                            config.bridge.step_rate, overrides=overrides)
    seconds = time.perf_counter() - started
    print(f"recorded {len(result.episodes)} episodes ({result.successes} successful) in {seconds:.1f} s -> {out}")
    return 0


def with_robot_file(path: str, given: dict) -> tuple[Config, dict]:
    """The settings of `minivla bag2data --robot FILE`: FILE read as --config reads a file (every section: robot,
    bag2data, env), with what --config, --set and the flags give over it, field by field."""
    merged = {section: dict(fields) if isinstance(fields, dict) else fields
              for section, fields in read_config_file(path).items()}
    if not isinstance(merged.get("robot"), dict):
        raise ConfigError(f"--robot {path} has no `robot` section: it names the topics of your robot's bags "
                          f"(docs/robot.md)")
    for section, fields in given.items():
        if isinstance(fields, dict) and isinstance(merged.get(section), dict):
            merged[section].update(fields)
        else:
            merged[section] = fields
    try:
        return Config.from_dict(merged), merged
    except ConfigError as exc:
        raise ConfigError(f"--robot {path}: {exc}") from None


def cmd_bag2data(config: Config, given: dict) -> int:
    """Bags -> dataset folder (appending)."""
    bag2data = import_ros("minivla_ros.bag2data", "bag2data")
    if config.bag2data.robot:
        config, given = with_robot_file(config.bag2data.robot, given)
    if not config.bag2data.bags:
        raise ConfigError("no bags given: name them (minivla bag2data BAG... --out DATASET) or set bag2data.bags")
    if "robot" in given:  # any robot's bags, through the `robot` section of --robot FILE, --config or --set
        robot_bags = import_ros("minivla_ros.robot_bags", "bag2data")
        summary = robot_bags.convert_robot_bags(config.bag2data.bags, config.bag2data.out, config.robot,
                                                config.bag2data, config.env.image_size)
    else:
        summary = bag2data.convert(config.bag2data.bags, config.bag2data.out, keep_failed=config.bag2data.keep_failed)
    print(f"{summary}\n-> {config.bag2data.out}")
    return 0


def cmd_teleop(config: Config, given: dict) -> int:
    """The keyboard teleop node in this terminal, publishing to the graph of ROS_DOMAIN_ID on the topics of the robot
    section (--config myarm.yaml, as `minivla policy` reads it; without one, the simulator bridge's)."""
    bringup = import_ros("minivla_ros.bringup", "teleop")
    if "ROS_DOMAIN_ID" not in os.environ:
        print("note: ROS_DOMAIN_ID is not set, so teleop gets a domain of its own and drives nothing; give it the "
              "graph's (`minivla run` and `minivla record` print theirs): ROS_DOMAIN_ID=N minivla teleop",
              file=sys.stderr)
    # rcl cannot type an empty list (`-p robot.camera_topics:=[]`), and teleop reads none of the robot's lists (a
    # gripperless arm's `state_joints: []` among them): such a field keeps the node's default.
    overrides = {name: value for name, value in node_settings(given, ("teleop", "robot")).items() if value != []}
    command = bringup.node_command("teleop", graph.PARAMS_FILE, overrides)
    return subprocess.run(command, env=bringup.ros_environment(), cwd=bringup.ROOT).returncode


def run_description() -> str:
    """`minivla run --help`: what it does in each timing mode, and what it prints there (bringup.summarize)."""
    default = RunConfig().timing
    modes = {
        "lockstep": "the simulator steps when the policy answers its newest observation, so an episode plays as "
                    "`minivla eval` plays it, however fast the machine is. Prints the observations answered, "
                    "answers a second and the sampling latency (p50, p99); no control rate or jitter (there is "
                    "no control timer).",
        "timed": "the policy samples whole chunks ahead, each action with its due time; the bridge executes them "
                 "on its own clock at bridge.step_rate, as a real robot would. Prints the chunks sampled, the "
                 "latency from observation to chunk (p50, p99) and the bridge's actions applied, steps held, "
                 "actions expired and chunks of another episode refused.",
        "free": "both nodes on their own timers (bridge.step_rate, policy_node.control_rate), the newest "
                "command applied. Prints the control rate configured and achieved, the tick jitter (p99), the "
                "sampling latency (p50, p99) and the dropped ticks.",
    }
    lines = textwrap.wrap("Start the simulator bridge and the policy node (as `ros2 launch minivla_ros "
                          "sim_policy.launch.py` would, with the same parameter file), send the instruction, "
                          "print each episode's result and then a summary of the policy's timing, and stop both "
                          "nodes after N episodes.", 100)
    lines += ["", f"Timing modes (--timing, run.timing: both nodes get it; default {default}):"]
    for mode, text in modes.items():
        lines += textwrap.wrap(text, 100, initial_indent=f"  {mode:<9} ", subsequent_indent=" " * 12)
    lines += [""] + textwrap.wrap("With --set policy_node.dry_run=true the policy computes actions but commands "
                                  "nothing, so no episode can end: the run stops once the policy has computed "
                                  "actions from the simulator's observations, and says it was a dry run.", 100)
    return "\n".join(lines)


def params_file_defaults(paths: list[str]) -> dict[str, str]:
    """What --help shows as the default of each node setting in `paths` that the parameter file sets."""
    values = graph.params_file_values(graph.PARAMS_FILE)
    where = graph.PARAMS_FILE.relative_to(graph.PARAMS_FILE.parents[1])
    return {path: f"{values[path]!r}, from {where} (--params-file)" for path in paths if path in values}


POLICY_DESCRIPTION = """\
Start the policy node alone, against a robot that is running already (its drivers publish the camera and state
topics and take the commands that the robot section names): no simulator bridge. The node gets the policy_node and
robot sections of --config, --set and the flags below (the schema's defaults for the fields they leave out), checked
against the schema before anything starts; the file's other sections are checked and not used. It runs until
Ctrl-C (or SIGTERM), which stops the node cleanly (exit status 0).

  minivla policy --config myarm.yaml --checkpoint runs/myarm/best.pt --instruction "push the puck to the goal"

ROS environment: a ROS_DOMAIN_ID already set is kept (give the robot's: ROS_DOMAIN_ID=N minivla policy ...; unset,
the node gets a domain of its own, where no robot is); DDS stays on loopback unless FASTRTPS_DEFAULT_PROFILES_FILE
names a profile of your own (docs/networking.md: a robot on another machine). Where the file says which task its
robot does (env.task, else bag2data.task), a checkpoint trained on another task is warned about. On real hardware,
start with --no-autostart --dry-run first (docs/nodes.md, "A managed node"). The same parameters as a file for
`ros2 run minivla_ros policy_node --ros-args --params-file FILE`: minivla params --config myarm.yaml > FILE"""

RUN_FLAGS = {"--episodes": "run.episodes", "--task": "env.task", "--instruction": "policy_node.instruction",
             "--timing": "run.timing", "--checkpoint": "policy_node.checkpoint",
             "--control-rate": "policy_node.control_rate", "--inference-steps": "policy_node.inference_steps",
             "--n-action-steps": "policy_node.n_action_steps", "--seed": "env.seed",
             "--params-file": "run.params_file", "--json": "run.json", "--view": "run.view",
             "--view-port": "run.view_port", "--view-save": "policy_node.view_save"}

# Each command: what it does, and its named flags, flag -> the config field it sets (minivla_core/cli.py: Command).
COMMANDS = {
    "teleop": Command(cmd_teleop, "drive the arm from the keyboard in a running graph: TwistStamped on "
                      "robot.action_topic, the gripper on robot.gripper_topic (none if empty); their defaults, "
                      "cmd_vel and gripper_command, are the simulator bridge's: ROS_DOMAIN_ID=N minivla teleop "
                      "[--config myarm.yaml]",
                      {"--speed": "teleop.speed"}),
    "policy": Command(cmd_policy, "start the policy node alone against a running robot, from the robot's config file "
                      "(its policy_node and robot sections), until Ctrl-C", {
                          "--checkpoint": "policy_node.checkpoint", "--instruction": "policy_node.instruction",
                          "--timing": "policy_node.timing", "--control-rate": "policy_node.control_rate",
                          "--autostart": "policy_node.autostart", "--dry-run": "policy_node.dry_run"},
                      description=POLICY_DESCRIPTION,
                      field_help={"policy_node.checkpoint": "the policy; a relative path is taken from the working "
                                                            "directory, then the repository root, then the package "
                                                            "share"}),
    "params": Command(cmd_params, "print a minivla config file as a ROS 2 parameter file (--ros-args --params-file "
                      "takes it; rcl does not read a minivla file): every field of the config sections of each node "
                      "whose sections --config / --set name (all nodes if none)", {}),
    "run": Command(cmd_run, "run the sim-plus-policy ROS graph (as `ros2 launch minivla_ros sim_policy.launch.py` "
                   "would), send the instruction, report N episodes", RUN_FLAGS, description=run_description(),
                   defaults=params_file_defaults(["policy_node.checkpoint", "policy_node.control_rate",
                                                  "policy_node.inference_steps", "policy_node.n_action_steps",
                                                  "env.seed"]),
                   field_help={"policy_node.instruction": "the instruction sent on the instruction topic (empty: the "
                                                          "task's own, e.g. 'push the puck to the goal')",
                               "policy_node.checkpoint": "the policy; a relative path is taken from the repository "
                                                         "root (where the nodes run), then the package share"}),
    "record": Command(cmd_record, "record scripted-expert demonstrations through the ROS graph as a rosbag2 folder "
                      "(the topics of minivla_ros/graph.py's RECORDED); stop after N episodes", {
                          "--episodes": "run.episodes", "--task": "env.task", "--instruction": "recorder.instruction",
                          "--out": "recorder.out", "--storage": "recorder.storage", "--step-rate": "bridge.step_rate",
                          "--params-file": "run.params_file"}),
    "bag2data": Command(cmd_bag2data, "convert demonstration bags into (or onto) a dataset folder: pair each action "
                        "with the newest image and state before it, split episodes by episode_status, keep "
                        "successful ones, append; with a `robot` section (--robot FILE, or --config FILE: both read "
                        "every section of the file), any robot's bags through its robot interface, resampled (the "
                        "pairing rules: docs/robot.md)", {
                            "bags": "bag2data.bags", "--out": "bag2data.out", "--keep-failed": "bag2data.keep_failed",
                            "--robot": "bag2data.robot", "--rate": "bag2data.rate",
                            "--instruction": "bag2data.instruction", "--image-size": "env.image_size"},
                        field_help={"env.image_size": "robot bags: images are cut to their centre square and "
                                                      "resized to this many pixels a side; bags of `minivla record` "
                                                      "keep the size they were recorded at"}),
}
