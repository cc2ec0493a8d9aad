"""The sim-plus-policy graph: the Meta-World simulator bridge and the diffusion policy node.

    ros2 launch minivla_ros sim_policy.launch.py
    ros2 launch minivla_ros sim_policy.launch.py task:=push-v3 control_rate:=20.0 inference_steps:=5
    ros2 launch minivla_ros sim_policy.launch.py timing:=lockstep   # the simulator waits for each answer
    ros2 launch minivla_ros sim_policy.launch.py timing:=timed      # timed chunks on the simulator's own clock
    ros2 topic pub --once /instruction std_msgs/msg/String "{data: 'push the puck to the goal'}"
    ros2 launch minivla_ros sim_policy.launch.py config:=config/fetch.yaml checkpoint:=checkpoints/fetch_push.pt

DDS stays on this machine (config/fastdds_loopback.xml) unless FASTRTPS_DEFAULT_PROFILES_FILE names another
profile: see docs/networking.md to open the graph to a robot on purpose.
Parameters come from config/sim_policy.yaml (or params_file:=...), then from the sections of a minivla config
file if config:=FILE names one (config/fetch.yaml: the Fetch robot in standard messages); the launch arguments
below override single values, and an argument left out keeps the files' value.
`minivla run` starts the same nodes with the same file where `ros2 launch` is not available.
"""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from minivla_ros import graph


def typed_overrides(context):
    """Both nodes, each with the parameter file and the launch arguments given, typed as the node declares them
    (graph.sim_policy_overrides); first a warning if the policy's checkpoint was not trained on the bridge's task
    (graph.sim_policy_warning: config:=config/fetch.yaml without checkpoint:= runs the push-v3 policy on Fetch)."""
    texts = {argument: LaunchConfiguration(argument).perform(context) for argument in graph.SIM_POLICY_ARGUMENTS}
    config_file = LaunchConfiguration("config").perform(context)
    params_file = LaunchConfiguration("params_file").perform(context)
    overrides = graph.sim_policy_overrides(texts, config_file)
    warning = graph.sim_policy_warning(params_file, overrides)
    nodes = [Node(package="minivla_ros", executable=node, name=node, output="screen", parameters=[params_file, values])
             for node, values in overrides.items()]
    return ([LogInfo(msg=warning)] if warning else []) + nodes


def loopback_only():
    """Every node's DDS sockets on loopback and shared memory, unless the user set a profile of their own."""
    profile = PathJoinSubstitution([FindPackageShare("minivla_ros"), "config", "fastdds_loopback.xml"])
    return [SetEnvironmentVariable(name, EnvironmentVariable(name, default_value=profile))
            for name in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")]


def generate_launch_description():
    declared = [DeclareLaunchArgument("params_file", description="ROS parameter file",
                                      default_value=PathJoinSubstitution([FindPackageShare("minivla_ros"), "config",
                                                                          "sim_policy.yaml"])),
                DeclareLaunchArgument("config", default_value="", description="a minivla config file whose env, "
                                      "bridge, policy_node and robot sections override params_file's (e.g. "
                                      "config/fetch.yaml)")]
    # The arguments default to "" (no override), not to the values in config/sim_policy.yaml: a default would
    # override every file given as params_file. Each one's description is its config field's, and says the value
    # the package's parameter file holds (the installed copy, beside this file's launch/ folder).
    package_params = Path(__file__).resolve().parents[1] / "config" / "sim_policy.yaml"
    for argument, description in graph.sim_policy_argument_help(package_params).items():
        declared.append(DeclareLaunchArgument(argument, default_value="", description=description))
    return LaunchDescription(loopback_only() + declared + [OpaqueFunction(function=typed_overrides)])
