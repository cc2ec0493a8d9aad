"""The graph's contract, written once: every topic and service, its message type, who publishes and
who subscribes, its QoS, which topics a demonstration bag holds, and the nodes each graph starts.

No rclpy here: the launch files, `minivla run` / `minivla record`, the recorder, `minivla bag2data`
(which runs on any machine), the tests and docs/topics.md (scripts/make_docs.py) all read this module.
`qos.py` turns the QoS names below into rclpy profiles.

QoS names:
    sensor     best effort, keep last 5 (ROS's sensor-data profile): a late frame is worthless
    reliable   reliable, volatile, keep last 10 (ROS's default): what `ros2 topic pub` offers, so the
               instruction topic uses it (a reliable or transient-local subscription would not match a
               best-effort or volatile publisher respectively)
    latched    reliable, transient local, keep last 1: a subscriber that comes late still gets the newest
               message (the current episode's start); subscriptions ask for "best available" durability,
               so they match a volatile publisher too (a robot's own episode topic)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from minivla_core.config import Config, field_docs, field_of, read_config_file, value_from_text
from minivla_core.errors import ConfigError, MiniVLAError


@dataclass(frozen=True)
class Topic:
    name: str  # relative: a node resolves it in its namespace (no namespace: "/" + name)
    type: str  # ROS interface, package/msg/Name
    qos: str  # "sensor", "reliable" or "latched" (see above)
    publishers: str  # who publishes, in words
    subscribers: str  # who subscribes, in words
    recorded: bool = False  # one of the topics of a demonstration bag
    required: bool = False  # `minivla bag2data` refuses a bag without it
    # In which graphs it carries anything: the simulator bridge's interfaces (bridge.interface) and the timing modes
    # (minivla_core/timing.py). Single commands go in free and lockstep timing, whole chunks in timed; timed takes
    # this package's interface only.
    interfaces: tuple[str, ...] = ("minivla", "standard")
    timings: tuple[str, ...] = ("free", "lockstep", "timed")

    @property
    def absolute(self) -> str:
        """The name in a bag and on the command line (`ros2 topic echo /robot_state`)."""
        return "/" + self.name


IMAGE = Topic("camera/image_raw", "sensor_msgs/msg/Image", "sensor", "sim_bridge (scene camera)",
              "policy_node", recorded=True, required=True)
STATE = Topic("robot_state", "minivla_ros/msg/RobotState", "sensor", "sim_bridge", "policy_node",
              recorded=True, required=True, interfaces=("minivla",))
PRIVILEGED_STATE = Topic("sim/privileged_state", "minivla_ros/msg/RobotState", "sensor", "sim_bridge",
                         "expert_node (Meta-World's full state, for the scripted expert; never a policy's input)",
                         interfaces=("minivla",))
EPISODE_STATUS = Topic("episode_status", "minivla_ros/msg/EpisodeStatus", "reliable", "sim_bridge", "anyone",
                       recorded=True, required=True, interfaces=("minivla",))
ACTION = Topic("action_command", "minivla_ros/msg/ActionCommand", "reliable", "policy_node or expert_node",
               "sim_bridge", recorded=True, required=True, interfaces=("minivla",), timings=("free", "lockstep"))
ACTION_CHUNK = Topic("action_chunk", "minivla_ros/msg/ActionChunk", "reliable",
                     "policy_node with policy_node.timing timed (whole chunks, each action with its due time)",
                     "sim_bridge with bridge.timing timed (executes them on its clock)", interfaces=("minivla",),
                     timings=("timed",))
INSTRUCTION = Topic("instruction", "std_msgs/msg/String", "reliable", "anyone (`ros2 topic pub`)", "policy_node",
                    recorded=True)
POLICY_STATUS = Topic("policy_status", "minivla_ros/msg/PolicyStatus", "reliable", "policy_node", "anyone")
PLANNED_PATH = Topic("policy_node/planned_path", "visualization_msgs/msg/MarkerArray", "reliable",
                     "policy_node with policy_node.publish_plan (each sampled chunk as the hand's path, in "
                     "robot.action_frame, stamped as the observation it was sampled from: LINE_STRIP markers "
                     "`planned`, the whole chunk, and `executed`, its first n_action_steps)",
                     "anyone (RViz, Foxglove)")
# The same robot in standard messages (the `robot` config section's defaults name these topics): what a real
# arm's drivers publish and what MoveIt Servo-style controllers take.
EE_POSE = Topic("ee_pose", "geometry_msgs/msg/PoseStamped", "sensor", "sim_bridge (hand position, world frame)",
                "policy_node when robot.state_type is PoseAndJoints")
JOINT_STATES = Topic("joint_states", "sensor_msgs/msg/JointState", "sensor",
                     "sim_bridge (arm joints, and `gripper`: opening 0..1)",
                     "policy_node when robot.state_type is PoseAndJoints")
CMD_VEL = Topic("cmd_vel", "geometry_msgs/msg/TwistStamped", "reliable",
                "anyone; policy_node when robot.action_type is TwistStamped", "sim_bridge (hand velocity, world frame)",
                timings=("free", "lockstep"))
GRIPPER_COMMAND = Topic("gripper_command", "std_msgs/msg/Float64", "reliable",
                        "anyone; policy_node with a standard robot.action_type", "sim_bridge (-1 open .. 1 closed)",
                        timings=("free", "lockstep"))
# Only with bridge.interface standard: what the simulator adds to a standard-message robot, in standard messages too.
SCENE_STATE = Topic("sim/scene_state", "std_msgs/msg/Float64MultiArray", "sensor",
                    "sim_bridge with bridge.interface standard (the simulator's full state, as sim/privileged_state)",
                    "expert_node (for the scripted expert; never a policy's input)", interfaces=("standard",),
                    timings=("free", "lockstep"))
EPISODE = Topic("episode", "std_msgs/msg/Header", "latched",
                "sim_bridge with bridge.interface standard (an episode starts: the stamp of its first observation)",
                "policy_node when robot.episode_topic names it; a bag's episode boundaries (bag2data.episode_topic)",
                interfaces=("standard",), timings=("free", "lockstep"))
DIAGNOSTICS = Topic("diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "reliable",
                    "policy_node (its health, once a second); sim_bridge with bridge.interface standard (each "
                    "episode's result, status `sim_bridge: episode`) or bridge.timing timed (what its executor did, "
                    "status `sim_bridge: executor`)", "anyone (rqt_robot_monitor, `minivla run`)")
TOPICS = (IMAGE, STATE, PRIVILEGED_STATE, EPISODE_STATUS, ACTION, ACTION_CHUNK, INSTRUCTION, POLICY_STATUS,
          PLANNED_PATH, EE_POSE, JOINT_STATES, CMD_VEL, GRIPPER_COMMAND, SCENE_STATE, EPISODE, DIAGNOSTICS)
RECORDED = tuple(topic for topic in TOPICS if topic.recorded)  # what a demonstration bag holds

RESET_SERVICE = "reset_episode"  # std_srvs/srv/Trigger, served by sim_bridge: end the episode, start the next


@dataclass(frozen=True)
class Service:
    name: str  # as `ros2 service call /NAME` takes it
    type: str  # ROS interface, package/srv/Name
    server: str  # the node that serves it
    what: str  # what a call does, in words


SERVICES = (
    Service(RESET_SERVICE, "std_srvs/srv/Trigger", "sim_bridge", "ends the current episode; the next layout follows"),
    Service("policy_node/pause", "std_srvs/srv/SetBool", "policy_node",
            "true pauses commanding (the robot holds), false resumes"),
    Service("policy_node/change_state", "lifecycle_msgs/srv/ChangeState", "policy_node",
            "a lifecycle transition (`ros2 lifecycle set`); one not valid from the current state answers "
            "success=false (minivla_ros/lifecycle.py). rclpy serves get_state, get_available_states, "
            "get_available_transitions and get_transition_graph beside it"),
)


def image_topic(camera: str, scene_camera: bool) -> str:
    """The scene camera publishes on IMAGE; each extra camera (env.extra_cameras) on camera/<its name>/image_raw,
    with the same type and QoS."""
    return IMAGE.name if scene_camera else f"camera/{camera}/image_raw"


# The nodes: executable name -> Python module. Each node's parameters are its config sections (config.py).
NODES = {"sim_bridge": "minivla_ros.sim_bridge", "policy_node": "minivla_ros.policy_node",
         "expert_node": "minivla_ros.expert_node", "recorder": "minivla_ros.recorder", "teleop": "minivla_ros.teleop"}

# Which nodes declare each config section as their parameters (minivla_ros/params.py). The expert commands the
# robot through the same robot interface as the policy, so its demonstrations hold the policy's own commands.
SECTION_NODES = {"env": ("sim_bridge",), "bridge": ("sim_bridge",), "policy_node": ("policy_node",),
                 "expert": ("expert_node",), "recorder": ("recorder",),
                 "robot": ("policy_node", "expert_node", "teleop"), "teleop": ("teleop",)}

# The parameters `ros2 param set` may change while a node runs (each node applies them in its parameter
# callback); every other parameter is declared read-only, so setting it is refused instead of ignored.
CHANGEABLE = {"sim_bridge": ("env.task", "bridge.command_timeout", "bridge.episodes"),
              "policy_node": ("policy_node.instruction", "policy_node.inference_steps", "policy_node.n_action_steps",
                              "policy_node.stale_after", "policy_node.dry_run")}

# The ROS parameter file of both graphs' nodes (launch/*.launch.py take the installed copy, `minivla run` and `record`
# this one unless --params-file names another).
PARAMS_FILE = Path(__file__).resolve().parents[1] / "config" / "sim_policy.yaml"


def params_file_values(path: str | Path = PARAMS_FILE) -> dict[str, object]:
    """Every parameter a ROS parameter file sets, as "section.field": value, over all its nodes."""
    nodes = yaml.safe_load(Path(path).read_text()) or {}
    return {f"{section}.{name}": value for node in nodes.values() for section, fields in node["ros__parameters"].items()
            for name, value in fields.items()}


def node_setting(params_file: str | Path, node: str, name: str, overrides: dict):
    """The value `node`, started with `params_file` and single `overrides` ("section.field": value), gets for
    parameter `name` ("section.field"): the override, else the parameter file's, else the schema's default."""
    if name in overrides:
        return overrides[name]
    section, key = name.split(".", 1)
    given = ((yaml.safe_load(Path(params_file).read_text()) or {}).get(node) or {}).get("ros__parameters") or {}
    return (given.get(section) or {}).get(key, field_of(name)[1])


def ros_parameters(config: Config, nodes) -> dict:
    """A ROS parameter file as rcl reads it (node -> ros__parameters -> section -> field) for each of `nodes`, with
    every field of the config sections it declares (SECTION_NODES), valued as in `config`: how a minivla config file
    becomes a file for `--ros-args --params-file` (`minivla params`, `minivla policy`). Empty lists: can_be_said."""
    parameters = {}
    for node in nodes:
        values, sections = config.to_dict(), {}  # lists of their own for each node: no YAML anchors, which rcl refuses
        for section in (section for section, users in SECTION_NODES.items() if node in users):
            sections[section] = {}
            for name, value in values[section].items():
                if can_be_said(f"{section}.{name}", value):
                    sections[section][name] = value
        parameters[node] = {"ros__parameters": sections}
    return parameters


def can_be_said(name: str, value) -> bool:
    """Whether field `name` ("section.field") set to `value` goes to a node as a ROS parameter (in a parameter file
    or as `-p`). rcl cannot type an empty list: one whose default is empty too is left out (the node declares the
    field empty, its default); one whose default is not cannot be said at all, and is a ConfigError."""
    if value != []:
        return True
    default = field_of(name)[1]
    if default != []:
        raise ConfigError(f"{name} is empty, which a ROS parameter cannot say (rcl cannot type an empty list) and "
                          f"the node would read as its default, {default}")
    return False


def resolve_path(path: str, cwd: str | Path | None = None) -> Path:
    """Where a node finds a file that a parameter names (a checkpoint): an absolute path as it is, a relative one in
    the node's working directory (`cwd`; default: this process's), else in the installed package's share."""
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate
    if (Path(cwd or ".") / candidate).exists():
        return Path(cwd or ".") / candidate
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        shared = Path(get_package_share_directory("minivla_ros")) / path
        return shared if shared.exists() else candidate
    except (ImportError, PackageNotFoundError, ValueError, OSError):  # OSError: AMENT_PREFIX_PATH is not set
        return candidate


def checkpoint_task_warning(checkpoint: str, task: str, where: str, cwd: str | Path | None = None) -> str | None:
    """A warning naming both when the checkpoint a policy node will load (found as resolve_path finds it from `cwd`)
    was not trained on `task`, the one it will command (`where`: the setting that says so); None when it was, or
    when the checkpoint cannot be read (the policy node says why)."""
    from minivla_core.checkpoint import read_checkpoint, untrained_task_warning

    try:
        env = read_checkpoint(resolve_path(checkpoint, cwd))["env"]
    except MiniVLAError:
        return None
    return untrained_task_warning(checkpoint, env, task, where)


def sim_policy_warning(params_file: str | Path, overrides: dict[str, dict],
                       cwd: str | Path | None = None) -> str | None:
    """The sim-plus-policy graph about to start (launch/sim_policy.launch.py, `minivla run`), with `overrides` per node
    (sim_policy_overrides): checkpoint_task_warning for the bridge's env.task and the policy node's checkpoint, each
    the override, else the parameter file's. `config:=config/fetch.yaml` without `checkpoint:=` used to run the
    push-v3 checkpoint on the Fetch scene without a word."""
    task = node_setting(params_file, "sim_bridge", "env.task", overrides.get("sim_bridge", {}))
    checkpoint = node_setting(params_file, "policy_node", "policy_node.checkpoint", overrides.get("policy_node", {}))
    return checkpoint_task_warning(checkpoint, task, "env.task", cwd)


# Recording demonstrations (launch/record_demos.launch.py, `minivla record`): layouts of the collection seed,
# and the bridge holds its first episode until the expert and the recorder subscribe to robot state.
RECORD_BRIDGE_OVERRIDES = {"env.seed": 0, "bridge.min_subscribers": 2}

# The arguments of launch/sim_policy.launch.py: argument -> the parameter it sets. Types come from the config
# schema; an argument left empty keeps the parameter file's value.
SIM_POLICY_ARGUMENTS = {
    "task": "env.task", "observation": "env.observation", "image_size": "env.image_size",
    "extra_cameras": "env.extra_cameras", "seed": "env.seed", "step_rate": "bridge.step_rate",
    "checkpoint": "policy_node.checkpoint", "control_rate": "policy_node.control_rate",
    "inference_steps": "policy_node.inference_steps", "n_action_steps": "policy_node.n_action_steps",
    "timing": "run.timing",  # both nodes' timing (bridge.timing and policy_node.timing), as `minivla run` sets it
}


def sim_policy_argument_help(params_file: str | Path = PARAMS_FILE) -> dict[str, str]:
    """The description of each launch argument of sim_policy.launch.py: its config field's comment, the parameters
    it sets, and the value `params_file` holds, which an argument left empty keeps (timing: free in the package's
    file, while `minivla run` gives both nodes run.timing, lockstep unless set)."""
    docs, in_file = field_docs(), params_file_values(params_file)
    descriptions = {}
    for argument, parameter in SIM_POLICY_ARGUMENTS.items():
        sets = ("bridge.timing", "policy_node.timing") if parameter == "run.timing" else (parameter,)
        value = in_file.get(sets[0])
        kept = f"params_file's, {value!r} in {Path(params_file).name}" if value is not None else "params_file's"
        descriptions[argument] = f"{docs[parameter]} (sets {' and '.join(sets)}; empty: {kept})"
    return descriptions


def config_file_overrides(path: str) -> dict[str, dict]:
    """The sections a minivla config file sets (e.g. config/fetch.yaml) -> {node: {parameter: value}} for the
    sim-plus-policy graph's two nodes; the file is checked against the schema first (ConfigError)."""
    written = read_config_file(path)
    config = Config.from_dict(written)
    overrides: dict[str, dict] = {"sim_bridge": {}, "policy_node": {}}
    for section, fields in written.items():
        for node in SECTION_NODES.get(section, ()):  # bag2data, train, ...: no node's
            if node in overrides:
                for name in fields or {}:
                    value = getattr(getattr(config, section), name)
                    if value != []:  # ROS cannot type an empty list: the parameter file's value stands
                        overrides[node][f"{section}.{name}"] = value
    return overrides


def sim_policy_overrides(texts: dict[str, str], config_file: str = "") -> dict[str, dict]:
    """The launch arguments given (argument -> text; empty: not given) -> {node: {parameter: typed value}}, over
    the sections of `config_file` when one is given. Every argument is converted (config.value_from_text) before any
    node starts, so a bad one stops the launch with a ConfigError and nothing left behind."""
    overrides = config_file_overrides(config_file) if config_file else {"sim_bridge": {}, "policy_node": {}}
    for argument, text in texts.items():
        if text == "":
            continue
        parameter = SIM_POLICY_ARGUMENTS[argument]
        try:  # typed as the node declares it: untyped, `control_rate:=10` would be an integer a double refuses
            value = value_from_text(parameter, text)
        except ConfigError as exc:
            raise ConfigError(f"launch argument {argument}:={text!r}: {exc}") from None
        if value == []:  # ROS cannot type an empty list; no extra cameras is the parameter file's own setting
            continue
        if parameter == "run.timing":
            overrides["sim_bridge"]["bridge.timing"] = overrides["policy_node"]["policy_node.timing"] = value
            continue
        overrides[SECTION_NODES[parameter.split(".")[0]][0]][parameter] = value
    return overrides


QOS_WORDS = {"sensor": "best effort, keep last 5", "reliable": "reliable, keep last 10",
             "latched": "reliable, transient local, keep last 1"}  # each profile in words (docs/topics.md)
