"""The sim-plus-policy graph: the Meta-World simulator bridge and the diffusion policy node.

    ros2 launch minivla_ros sim_policy.launch.py
    ros2 launch minivla_ros sim_policy.launch.py task:=push-v3 control_rate:=20.0 inference_steps:=5
    ros2 topic pub --once /instruction std_msgs/msg/String "{data: 'push the puck to the goal'}"

DDS stays on this machine (config/fastdds_loopback.xml) unless FASTRTPS_DEFAULT_PROFILES_FILE names another
profile: see "Networking" in README.md to open the graph to a robot on purpose.
Parameters come from config/sim_policy.yaml (or params_file:=...); the launch arguments below override
single values, and an argument left out keeps the file's value.
`minivla run` starts the same nodes with the same file where `ros2 launch` is not available.
"""

import yaml
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    # launch argument: (parameter it sets, its value in config/sim_policy.yaml, which also gives its type, description)
    "task": ("env.task", "push-v3", "Meta-World task the simulator runs"),
    "observation": ("env.observation", "proprio", "robot state the bridge publishes: proprio (hand position and "
                    "gripper) or full (privileged simulator state, for comparison); must be the checkpoint's"),
    "image_size": ("env.image_size", "128", "camera image size in pixels; must be the checkpoint's (multitask.pt: 96)"),
    "extra_cameras": ("env.extra_cameras", "[]", "more cameras the bridge renders, e.g. [gripperPOV]; must be the "
                      "checkpoint's (`minivla info` lists them)"),
    "seed": ("env.seed", "1000", "layout seed (1000: layouts never seen in collection)"),
    "step_rate": ("bridge.step_rate", "20.0", "simulator steps per second"),
    "checkpoint": ("policy.checkpoint", "checkpoints/push_v3.pt", "policy checkpoint (relative: package share)"),
    "control_rate": ("policy.control_rate", "20.0", "action commands per second"),
    "inference_steps": ("policy.inference_steps", "0", "DDIM steps per sampling call (0: the checkpoint's)"),
    "n_action_steps": ("policy.n_action_steps", "0", "actions executed per chunk (0: the checkpoint's)"),
}
BRIDGE_SECTIONS = ("env", "bridge")


def typed_overrides(context):
    """The launch arguments given, as parameter values of the types the nodes declare (those of ARGUMENTS).

    Untyped, `control_rate:=10` would reach the node as an integer, which a double parameter refuses.
    All arguments are converted before either node starts, so a bad value stops the launch with no
    process left behind.
    """
    overrides = {"sim_bridge": {}, "policy_node": {}}
    for argument, (parameter, default, description) in ARGUMENTS.items():
        text, value_type = LaunchConfiguration(argument).perform(context), type(yaml.safe_load(default))
        if text == "":  # not given: the parameter file's value stands
            continue
        try:
            value = value_type(text) if value_type is not list else list_of_names(text)
            if value == []:  # ROS cannot type an empty list; no extra cameras is the file's own setting
                continue
        except ValueError:
            raise ValueError(f"launch argument {argument}:={text!r}: expected {value_type.__name__} "
                             f"({description})") from None
        overrides["sim_bridge" if parameter.split(".")[0] in BRIDGE_SECTIONS else "policy_node"][parameter] = value
    params_file = LaunchConfiguration("params_file")
    return [Node(package="minivla_ros", executable=node, name=node, output="screen", parameters=[params_file, values])
            for node, values in overrides.items()]


def list_of_names(text: str) -> list:
    """`[gripperPOV]` or `[a, b]` -> a list of names."""
    value = yaml.safe_load(text)
    if not (isinstance(value, list) and all(isinstance(name, str) for name in value)):
        raise ValueError(text)
    return value


def loopback_only():
    """Every node's DDS sockets on loopback and shared memory, unless the user set a profile of their own."""
    profile = PathJoinSubstitution([FindPackageShare("minivla_ros"), "config", "fastdds_loopback.xml"])
    return [SetEnvironmentVariable(name, EnvironmentVariable(name, default_value=profile))
            for name in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")]


def generate_launch_description():
    declared = [DeclareLaunchArgument("params_file", description="ROS parameter file",
                                      default_value=PathJoinSubstitution([FindPackageShare("minivla_ros"), "config",
                                                                          "sim_policy.yaml"]))]
    # The arguments default to "" (no override), not to their values in config/sim_policy.yaml: a default
    # would override every file given as params_file.
    for argument, (parameter, default, description) in ARGUMENTS.items():
        declared.append(DeclareLaunchArgument(argument, default_value="", description=f"{description} (empty: "
                                              f"params_file's {parameter}; {default} in the package's file)"))
    return LaunchDescription(loopback_only() + declared + [OpaqueFunction(function=typed_overrides)])
