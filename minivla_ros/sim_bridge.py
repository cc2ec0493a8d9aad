"""Simulator bridge: a simulated arm (Meta-World, or Fetch for env.task fetch-push: minivla_core/envs) as if
it were a robot.

At `bridge.step_rate` it applies the newest action command, steps the simulation, and publishes
the camera image (one topic per camera: camera/image_raw, camera/<name>/image_raw for each of
`env.extra_cameras`), the robot state (of the `env.observation` protocol, "proprio" by default: hand
position and gripper) and the episode status. The simulator's full state goes to its own topic,
sim/privileged_state, for the scripted expert only: a policy sees the scene through the camera.

It is also a robot in standard messages, as a real arm's drivers are: the hand's position as a
geometry_msgs/PoseStamped on ee_pose (world frame), the arm's 7 joint angles and the gripper's opening
(joint `gripper`, 0..1) as a sensor_msgs/JointState on joint_states; it takes the hand's velocity as a
geometry_msgs/TwistStamped on cmd_vel (m/s in frame "world": a twist in any other frame, or none, is refused, since
the simulator knows no transforms; the env's hand_step metres per step for an action of 1: Meta-World's 1 cm is
0.2 m/s at 20 steps/s, Fetch's 1.25 cm 0.25 m/s) with the gripper's command as std_msgs/Float64 on gripper_command
(-1 open .. 1 closed; the newest one holds until the next). A command of either kind is the newest command.

With `bridge.interface` standard it is a robot in standard messages only, as a real arm is: it publishes and takes
no message of this package's own types (robot_state, sim/privileged_state, action_command, episode_status; a policy
node still offers its own policy_status and listens on episode_status, which then stays silent). What a
simulator adds comes in standard messages too: the full state for the scripted expert as a
std_msgs/Float64MultiArray on sim/scene_state, each episode's start as a std_msgs/Header on
`episode` (a recording's episode boundaries), and each episode's result as a diagnostic_msgs/DiagnosticArray on
/diagnostics (status `sim_bridge: episode`, values episode, steps, success, return).

With `bridge.timing` lockstep (the simulator's synchronous mode; `minivla run` uses it) the bridge does not step
on its clock but when a command answers its newest observation: a command's stamp (ActionCommand's
observation_stamp, TwistStamped's header.stamp) names the observation it answers, and a policy node with
policy_node.timing lockstep answers each one. The episode then runs as `minivla eval` runs it, step for step,
as fast as the policy answers; a command answering an older observation is not applied. Without an answer for
`bridge.command_timeout` seconds it takes a step holding still, and says so.

With `bridge.timing` timed (a real robot's clock, with a policy whose inference may take longer than a step) it
steps at step_rate and takes whole chunks on action_chunk (minivla_ros/ActionChunk: each action with its due time)
into a time-indexed buffer (minivla_core/timed.py: ActionBuffer); at each step it applies the action due then,
drops the ones whose time has passed and holds still when none is due. It applies no action of an episode other
than its current one, nor a chunk numbered below the newest it took (a chunk sampled before a stop chunk never
replaces it), and an episode's first chunk starts at the next step. A chunk longer than 1024 actions, or planned
for another control rate than step_rate, is refused; so are single commands. Observations are stamped with the time
of their step, the time the chunk's due times count from. What it executed (actions applied, skipped, late, steps held,
chunks refused, the largest jump at a seam between chunks) goes to /diagnostics at the end of each episode
(status `sim_bridge: executor`).

When it steps and which command it applies is minivla_core/stepping.py (one class per timing mode); what it does
without a command and when an episode ends are the rules of minivla_core/episode_rules.py (hold still, an episode's
clock starts with its first command, ...); this node turns their events into messages. It adds the ROS sides:
- With `bridge.min_subscribers` > 0 it publishes nothing at all until that many subscriptions to
  robot_state and sim/privileged_state have existed for a second (a recording then starts with the
  first observation).
- The `reset_episode` service ends the current episode and starts the next.
- The task can change while running: `ros2 param set /sim_bridge env.task drawer-open-v3` ends
  the current episode and continues in the new task (an unknown task name is refused).

Parameters: the fields of EnvConfig (`env.*`) and BridgeConfig (`bridge.*`).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64, Float64MultiArray, Header
from std_srvs.srv import Trigger

from minivla_core.actions import check_action
from minivla_core.config import PRIVILEGED, BridgeConfig, EnvConfig, observation_label, validated_replace
from minivla_core.envs import check_sim_task
from minivla_core.episode_rules import EpisodeEnd, EpisodeRules, Holding, NewObservation, TaskSwitch
from minivla_core.errors import ConfigError, TaskError
from minivla_core.stepping import ChunkRefused, Unanswered, make_stepping
from minivla_ros import graph, qos
from minivla_ros.conversions import (
    action_from_msg, chunk_from_msg, image_to_msg, joint_state_to_msg, pose_to_msg, stamp_from_seconds, state_to_msg)
from minivla_ros.interfaces import action_from_twist, gripper_from_msg
from minivla_ros.msg import ActionChunk, ActionCommand, EpisodeStatus, RobotState
from minivla_ros.params import declare_section
from minivla_ros.spin import run_node


COMMAND_FRAME = "world"  # the frame of ee_pose, and the only frame a cmd_vel may be in


class SimBridgeNode(Node):
    def __init__(self):
        super().__init__("sim_bridge")
        self.env_config = declare_section(self, "env", EnvConfig(), changeable=graph.CHANGEABLE["sim_bridge"])
        self.config = declare_section(self, "bridge", BridgeConfig(), changeable=graph.CHANGEABLE["sim_bridge"])
        self.standard = self.config.interface == "standard"  # (each section validated by the schema)
        timing = self.config.timing  # minivla_core/timing.py
        self.lockstep, self.timed = timing == "lockstep", timing == "timed"
        self.rules = EpisodeRules(self.env_config, self.config.command_timeout, self.config.episodes,
                                  self.config.motion_noise)
        self.stepping = make_stepping(timing, self.rules, self.config.step_rate)
        cameras = self.rules.env.cameras
        self.image_pubs = [self.create_publisher(Image, graph.image_topic(camera, i == 0), qos.profile(graph.IMAGE))
                           for i, camera in enumerate(cameras)]
        self.pose_pub = self.create_publisher(PoseStamped, graph.EE_POSE.name, qos.profile(graph.EE_POSE))
        self.joints_pub = self.create_publisher(JointState, graph.JOINT_STATES.name, qos.profile(graph.JOINT_STATES))
        if self.standard:
            self.scene_pub = self.create_publisher(Float64MultiArray, graph.SCENE_STATE.name,
                                                   qos.profile(graph.SCENE_STATE))
            self.episode_pub = self.create_publisher(Header, graph.EPISODE.name, qos.profile(graph.EPISODE))
            self.diagnostics_pub = self.create_publisher(DiagnosticArray, graph.DIAGNOSTICS.absolute,
                                                         qos.profile(graph.DIAGNOSTICS))
            self.ready_pubs = (self.joints_pub, self.scene_pub)  # a recorder and an expert subscribe to these
        else:
            self.state_pub = self.create_publisher(RobotState, graph.STATE.name, qos.profile(graph.STATE))
            self.privileged_pub = self.create_publisher(RobotState, graph.PRIVILEGED_STATE.name,
                                                        qos.profile(graph.PRIVILEGED_STATE))
            self.status_pub = self.create_publisher(EpisodeStatus, graph.EPISODE_STATUS.name,
                                                    qos.profile(graph.EPISODE_STATUS))
            self.create_subscription(ActionCommand, graph.ACTION.name, self.on_command, qos.profile(graph.ACTION))
            self.ready_pubs = (self.state_pub, self.privileged_pub)
        if self.timed:
            self.create_subscription(ActionChunk, graph.ACTION_CHUNK.name, self.on_chunk,
                                     qos.profile(graph.ACTION_CHUNK))
            self.diagnostics_pub = self.create_publisher(DiagnosticArray, graph.DIAGNOSTICS.absolute,
                                                         qos.profile(graph.DIAGNOSTICS))
        self.announced_episode = None  # the newest episode whose start was published on `episode` (standard)
        # The gripper's subscription first: messages ready together are taken in this order, and a policy publishes
        # the gripper's command before the motion it goes with (in lockstep the motion steps at once).
        self.create_subscription(Float64, graph.GRIPPER_COMMAND.name, self.on_gripper,
                                 qos.profile(graph.GRIPPER_COMMAND))
        self.create_subscription(TwistStamped, graph.CMD_VEL.name, self.on_twist, qos.profile(graph.CMD_VEL))
        self.gripper = -1.0  # the newest gripper_command (open until told otherwise)
        self.create_service(Trigger, graph.RESET_SERVICE, self.on_reset_request)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.timer = self.create_timer(1.0 / self.config.step_rate, self.step)
        self.ready_since = None
        self.obs_stamp = None  # stamp of the newest published observation
        pace = ("in lockstep with the policy" if self.lockstep else
                f"at {self.config.step_rate} Hz{', executing timed chunks' if self.timed else ''}")
        self.get_logger().info(f"simulating {self.env_config.task} ({' and '.join(cameras)} camera, "
                               f"{self.env_config.image_size}px, {observation_label(self.env_config.observation)} "
                               f"robot state) {pace}, seed {self.env_config.seed}, {self.config.interface} messages")

    def on_command(self, msg: ActionCommand) -> None:
        try:
            action = action_from_msg(msg)
        except ValueError as exc:
            self.get_logger().error(f"refusing action command: {exc}", throttle_duration_sec=1.0)
            return
        self.take(action, answers=msg.observation_stamp)

    def on_twist(self, msg: TwistStamped) -> None:
        """Hand velocity (m/s) in the world frame -> the action that moves the hand that far in one step, with the
        newest gripper. A twist in any other frame (or none) is refused: this robot has no transforms, and a velocity
        read in the wrong axes moves the hand where nobody asked."""
        velocity_scale = self.rules.env.hand_step * self.config.step_rate  # m/s for an action of 1
        if msg.header.frame_id != COMMAND_FRAME:
            self.get_logger().error(f"refusing cmd_vel in frame {msg.header.frame_id!r}: this robot takes velocities "
                                    f"in {COMMAND_FRAME!r} (header.frame_id; robot.action_frame of a policy node)",
                                    throttle_duration_sec=1.0)
            return
        try:
            action = check_action(np.append(action_from_twist(msg, velocity_scale), self.gripper))
        except ValueError as exc:
            self.get_logger().error(f"refusing cmd_vel: {exc} (at most {velocity_scale:g} m/s per axis)",
                                    throttle_duration_sec=1.0)
            return
        self.take(action, answers=msg.header.stamp)

    def on_chunk(self, msg: ActionChunk) -> None:
        """Timed: a chunk of actions with due times, into the buffer (the one before it is replaced from its first
        action on). An episode's first chunk starts at the next step: the arm waits still until it comes."""
        try:
            first_due, actions = chunk_from_msg(msg, self.rules.env.action_dim)
            events = self.stepping.chunk(msg.episode, first_due, msg.period, actions, msg.chunk, self.ros_now())
        except ValueError as exc:
            self.get_logger().error(f"refusing action chunk: {exc}", throttle_duration_sec=1.0)
            return
        self.publish(events)

    def take(self, action: np.ndarray, answers) -> None:
        """A checked action, answering the observation of stamp `answers` (minivla_core/stepping.py: free applies
        the newest at the next step, lockstep steps now if it answers the newest observation)."""
        try:
            events = self.stepping.command(action, (answers.sec, answers.nanosec), time.monotonic())
        except ValueError as exc:  # timed: single commands are not taken
            self.get_logger().error(f"refusing command: {exc}", throttle_duration_sec=5.0)
            return
        self.publish(events)

    def ros_now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_gripper(self, msg: Float64) -> None:
        try:
            gripper = gripper_from_msg(msg)
            check_action([0.0, 0.0, 0.0, gripper])
        except ValueError as exc:
            self.get_logger().error(f"refusing gripper_command: {exc}", throttle_duration_sec=1.0)
            return
        self.gripper = gripper

    def on_set_parameters(self, parameters):
        """The parameters that can change while running (the rest are read-only):
        `ros2 param set /sim_bridge env.task drawer-open-v3` switches task at the next step;
        bridge.command_timeout and bridge.episodes take effect at once."""
        changes = {parameter.name: parameter.value for parameter in parameters}
        bridge = {name.split(".", 1)[1]: value for name, value in changes.items() if name.startswith("bridge.")}
        try:
            if "env.task" in changes:
                check_sim_task(changes["env.task"])
            config = validated_replace(self.config, "bridge", **bridge)
        except (TaskError, ConfigError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if "env.task" in changes:
            self.rules.request_task(changes["env.task"])
        self.config = config
        self.rules.command_timeout, self.rules.episodes = self.config.command_timeout, self.config.episodes
        return SetParametersResult(successful=True)

    def on_reset_request(self, request, response):
        self.publish(self.rules.request_reset())
        response.success, response.message = True, f"started episode {self.rules.env.episode}"
        return response

    def step(self) -> None:
        self.publish(self.stepping.tick(time.monotonic(), self.ros_now(), self.subscribers_ready()))

    def subscribers_ready(self) -> bool:
        """True once bridge.min_subscribers subscriptions to the two state topics (standard: joint_states and
        sim/scene_state) have existed for a second."""
        if self.config.min_subscribers <= 0:
            return True
        subscriptions = sum(publisher.get_subscription_count() for publisher in self.ready_pubs)
        if subscriptions < self.config.min_subscribers:
            self.ready_since = None
            return False
        self.ready_since = self.ready_since or time.monotonic()
        return time.monotonic() - self.ready_since > 1.0

    def publish(self, events: list) -> None:
        for event in events:
            if isinstance(event, NewObservation):
                if self.timed and event.final:  # before the status that says done: whoever stops at it has them
                    self.publish_executor_counts()
                self.publish_observation(event)
            elif isinstance(event, EpisodeEnd):
                if self.timed and event.reason not in ("success", "time-out"):  # no final observation said done
                    self.publish_executor_counts()
                # The closing status describes the episode's last observation, so it carries that one's stamp.
                if self.standard:
                    self.publish_result(event)
                elif event.reason not in ("success", "time-out"):  # else its final observation's status said done
                    self.publish_status(event.task, event.episode, event.steps, event.success,
                                        event.episode_return, done=True, stamp=self.obs_stamp)
                if event.reason == "task switch":
                    continue  # the TaskSwitch event that follows says it
                self.get_logger().info(f"episode {event.episode} ended ({event.reason}) after {event.steps} steps")
            elif isinstance(event, Holding):
                self.get_logger().warning(f"no action command for {event.idle_seconds:.2f} s: holding still")
            elif isinstance(event, TaskSwitch):
                self.get_logger().info(f"switching from {event.old} to {event.new}")
            elif isinstance(event, Unanswered):
                self.get_logger().warning(
                    f"lockstep: {event.count} command(s) so far answered no current observation, not applied (late, "
                    f"or from a policy not in lockstep: set policy_node.timing lockstep)", throttle_duration_sec=5.0)
            elif isinstance(event, ChunkRefused):
                self.get_logger().info(f"chunk {event.chunk} of episode {event.episode} refused: the robot is in "
                                       f"episode {event.robot_episode}, or has a newer chunk",
                                       throttle_duration_sec=1.0)

    def publish_observation(self, event: NewObservation) -> None:
        """Images, state and status of one observation share one stamp (recordings rely on it)."""
        if self.timed:  # the time of its step: the due times of chunks count from it
            stamp = stamp_from_seconds(self.stepping.observation_time(self.ros_now()))
        else:
            stamp = self.get_clock().now().to_msg()
        self.obs_stamp = stamp
        observation = event.observation
        self.stepping.published(event.episode, event.step, (stamp.sec, stamp.nanosec), time.monotonic())
        if self.standard and event.episode != self.announced_episode:  # with its first observation's stamp, so that
            self.announced_episode = event.episode  # a recording orders the start before that observation
            self.episode_pub.publish(Header(stamp=stamp))
        for publisher, image in zip(self.image_pubs, observation.images):
            publisher.publish(image_to_msg(image, stamp))
        hand, gripper = observation.state[:3], observation.state[3]  # both robots' states begin so
        self.pose_pub.publish(pose_to_msg(hand, stamp))
        self.joints_pub.publish(joint_state_to_msg([*self.rules.env.arm_joint_names, "gripper"],
                                                   [*observation.arm_joints, gripper], stamp))
        if self.standard:
            self.scene_pub.publish(Float64MultiArray(data=[float(v) for v in observation.privileged]))
            return
        self.state_pub.publish(state_to_msg(observation.state, stamp, self.env_config.observation))
        self.privileged_pub.publish(state_to_msg(observation.privileged, stamp, PRIVILEGED))
        self.publish_status(event.task, event.episode, event.step, observation.success, event.episode_return,
                            done=event.final, stamp=stamp)

    def publish_executor_counts(self) -> None:
        """Timed: what the executor did since the bridge started, a DiagnosticStatus `sim_bridge: executor`."""
        counts = dataclasses.asdict(self.stepping.buffer.counts)
        counts = {k: round(v, 4) if isinstance(v, float) else v for k, v in counts.items()}
        status = DiagnosticStatus(level=DiagnosticStatus.OK, name=f"{self.get_name()}: executor",
                                  hardware_id=self.get_name(), message=f"{counts['held']} steps held",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in counts.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def publish_result(self, end: EpisodeEnd) -> None:
        """An episode's result in standard messages: a DiagnosticStatus `sim_bridge: episode` on /diagnostics."""
        values = {"task": end.task, "episode": end.episode, "steps": end.steps, "success": end.success,
                  "return": round(end.episode_return, 3), "reason": end.reason}
        status = DiagnosticStatus(level=DiagnosticStatus.OK, name=f"{self.get_name()}: episode",
                                  hardware_id=self.get_name(), message=f"episode {end.episode}: {end.reason}",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.obs_stamp or self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def publish_status(self, task: str, episode: int, step: int, success: bool, episode_return: float,
                       done: bool, stamp) -> None:
        msg = EpisodeStatus()
        msg.header.stamp = stamp or self.get_clock().now().to_msg()
        msg.task, msg.episode, msg.step = task, episode, step
        msg.success, msg.done, msg.episode_return = bool(success), done, float(episode_return)
        self.status_pub.publish(msg)

    def destroy_node(self) -> None:
        self.rules.close()
        super().destroy_node()


def main(args=None) -> None:
    run_node(SimBridgeNode, args)


if __name__ == "__main__":
    main()
