"""The sim-plus-policy graph: the Meta-World simulator bridge and the diffusion policy node.

    ros2 launch minivla_ros sim_policy.launch.py
    ros2 launch minivla_ros sim_policy.launch.py task:=push-v3 control_rate:=20.0 inference_steps:=5
    ros2 topic pub --once /instruction std_msgs/msg/String "{data: 'push the puck to the goal'}"

Parameters come from config/sim_policy.yaml; the launch arguments below override single values.
`minivla run` starts the same nodes with the same file where `ros2 launch` is not available.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    # launch argument: (parameter it sets, default, description)
    "task": ("env.task", "push-v3", "Meta-World task the simulator runs"),
    "seed": ("env.seed", "1000", "layout seed (1000: layouts never seen in collection)"),
    "step_rate": ("bridge.step_rate", "20.0", "simulator steps per second"),
    "checkpoint": ("policy.checkpoint", "checkpoints/push_v3.pt", "policy checkpoint (relative: package share)"),
    "control_rate": ("policy.control_rate", "20.0", "action commands per second"),
    "inference_steps": ("policy.inference_steps", "0", "DDIM steps per sampling call (0: the checkpoint's)"),
    "n_action_steps": ("policy.n_action_steps", "0", "actions executed per chunk (0: the checkpoint's)"),
}
BRIDGE_SECTIONS = ("env", "bridge")


def generate_launch_description():
    params_file = LaunchConfiguration("params_file")
    declared = [DeclareLaunchArgument("params_file", description="ROS parameter file",
                                      default_value=PathJoinSubstitution([FindPackageShare("minivla_ros"), "config",
                                                                          "sim_policy.yaml"]))]
    bridge_overrides, policy_overrides = {}, {}
    for argument, (parameter, default, description) in ARGUMENTS.items():
        declared.append(DeclareLaunchArgument(argument, default_value=default, description=description))
        target = bridge_overrides if parameter.split(".")[0] in BRIDGE_SECTIONS else policy_overrides
        target[parameter] = LaunchConfiguration(argument)
    return LaunchDescription(declared + [
        Node(package="minivla_ros", executable="sim_bridge", name="sim_bridge", output="screen",
             parameters=[params_file, bridge_overrides]),
        Node(package="minivla_ros", executable="policy_node", name="policy_node", output="screen",
             parameters=[params_file, policy_overrides]),
    ])
