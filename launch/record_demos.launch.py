"""Record scripted-expert demonstrations: simulator bridge + expert node + `ros2 bag record`.

    ros2 launch minivla_ros record_demos.launch.py out:=bags/push episodes:=100
    minivla bag2data bags/push --out data/push-ros          # then: minivla train --dataset data/push-ros

The bag holds exactly the topics of the recording contract (graph.RECORDED in minivla_ros/graph.py). The bridge
holds its first episode until the expert and the recorder subscribe, and stops stepping after
`episodes` episodes; stop the launch with Ctrl-C then (the recorder closes the bag). If the
recorder exits (it cannot write `out`, say) or cannot start (no `ros2` command), the whole launch
shuts down with it. The instruction (by default the task's own sentence) is published once the
recorder listens. `minivla record` does the same without `ros2 launch`. DDS stays on this machine
(config/fastdds_loopback.xml), as in sim_policy.launch.py.
"""

import json
import shutil

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, ExecuteProcess, LogInfo, OpaqueFunction,
                            RegisterEventHandler, SetEnvironmentVariable)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from minivla_core.config import value_from_text
from minivla_core.envs import sim_instruction
from minivla_ros import graph


def publish_instruction(context):
    """`ros2 topic pub` of the instruction. Its message is YAML: written as JSON (a subset of YAML), any
    text survives (quotes, colons, a leading dash), which pasting it between quotes would not."""
    task = LaunchConfiguration("task").perform(context)
    text = LaunchConfiguration("instruction").perform(context) or sim_instruction(task)
    message = json.dumps({"data": text}, ensure_ascii=False)
    return [ExecuteProcess(cmd=["ros2", "topic", "pub", "--once", "-w", "1", graph.INSTRUCTION.absolute,
                                graph.INSTRUCTION.type, message], output="screen")]


def start_recorder(context):
    """`ros2 bag record` of the recording topics and the instruction, then the simulation; the launch shuts down
    when the recorder exits, or at once, with nothing started, if there is no `ros2` command to run it (a process
    that never starts sends no exit event)."""
    if shutil.which("ros2") is None:
        reason = "cannot record: no `ros2` command on PATH (source your ROS 2 setup, or use `minivla record`)"
        return [LogInfo(msg=reason), EmitEvent(event=Shutdown(reason=reason))]
    recorder = ExecuteProcess(cmd=["ros2", "bag", "record", "-s", "mcap", "-o", LaunchConfiguration("out"),
                                   "--topics", *(topic.absolute for topic in graph.RECORDED)], output="screen")
    return [recorder, RegisterEventHandler(OnProcessExit(target_action=recorder, on_exit=[
        EmitEvent(event=Shutdown(reason="the recorder (ros2 bag record) exited"))])), *publish_instruction(context),
            *start_simulation(context)]


def start_simulation(context):
    """The bridge and the expert, each launch argument typed as the node declares its parameter and checked by the
    config schema (minivla_core/config.py: value_from_text): `step_rate:=30` and `1e3` reach the bridge as floats,
    `step_rate:=-1` stops the launch with the field named."""
    def typed(argument, parameter):
        return value_from_text(parameter, LaunchConfiguration(argument).perform(context))

    bridge = {"env.task": typed("task", "env.task"), **graph.RECORD_BRIDGE_OVERRIDES,
              "bridge.episodes": typed("episodes", "bridge.episodes"),
              "bridge.step_rate": typed("step_rate", "bridge.step_rate")}
    params_file = PathJoinSubstitution([FindPackageShare("minivla_ros"), "config", "sim_policy.yaml"])
    return [Node(package="minivla_ros", executable="sim_bridge", name="sim_bridge", output="screen",
                 parameters=[params_file, bridge]),
            Node(package="minivla_ros", executable="expert_node", name="expert_node", output="screen",
                 parameters=[{"expert.task": typed("task", "expert.task")}])]


def generate_launch_description():
    profile = PathJoinSubstitution([FindPackageShare("minivla_ros"), "config", "fastdds_loopback.xml"])
    return LaunchDescription([
        *(SetEnvironmentVariable(name, EnvironmentVariable(name, default_value=profile))
          for name in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")),
        DeclareLaunchArgument("task", default_value="push-v3", description="Meta-World task"),
        DeclareLaunchArgument("out", default_value="bags/demos", description="new rosbag2 folder"),
        DeclareLaunchArgument("episodes", default_value="100", description="episodes to record"),
        DeclareLaunchArgument("step_rate", default_value="20.0", description="simulator steps per second"),
        DeclareLaunchArgument("instruction", default_value="",
                              description="instruction recorded with the demonstrations (empty: the task's own)"),
        OpaqueFunction(function=start_recorder),  # the recorder, then the simulation: without a recorder nothing starts
    ])
