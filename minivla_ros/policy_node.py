"""Policy node: the diffusion policy commanding a robot, as glue over ROS-free parts.

The node subscribes to what the policy sees (one camera image per camera the checkpoint was trained with, the robot
state, the instruction), converts each message, and hands it on; it publishes what the policy decides, its status
and /diagnostics; it declares its parameters from the config schema and runs the lifecycle. The rules live in the
core, each unit-tested without DDS:
- minivla_core/sync.py (ObservationAssembler): which inputs belong together (the newest of each, or exact stamps)
  and when an input is stale;
- minivla_core/drivers.py: what each timing mode does with an observation, a tick, a hold and a transition
  (policy_node.timing, minivla_core/timing.py): "free" publishes one command per control_rate tick from the newest
  inputs; "lockstep" answers each observation with one command naming it; "timed" publishes whole chunks with due
  times (minivla_ros/ActionChunk on action_chunk), sampled ahead on a thread of their own.

Which topics and messages carry the images, the state and the commands is the robot interface, the `robot.*`
parameters (RobotConfig; minivla_ros/interfaces.py): by default the simulator's own (camera/image_raw, robot_state,
action_command); for any robot, sensor_msgs/Image or CompressedImage, a PoseStamped and named JointState joints,
and TwistStamped, JointTrajectory or Float64MultiArray commands with a std_msgs/Float64 gripper command (or none:
a robot with no gripper takes actions of its command's own size, 3 for a twist). The interface is checked against
the checkpoint when it loads.

A managed (lifecycle) node, as anything commanding hardware should be: `configure` loads and checks the checkpoint
(a failure names the reason and leaves the node unconfigured), `activate` starts commanding, `deactivate` holds (a
zero velocity for TwistStamped, a chunk of standing still in timed timing, and nothing sampled before it is
published after it), `cleanup` lets the checkpoint go (from active it deactivates first). A transition that is not
valid from the current state is refused (success=false), never fatal (minivla_ros/lifecycle.py). With
`policy_node.autostart` (the default) it configures and activates itself. Further safety: `policy_node.dry_run`
computes and logs actions but commands nothing; `robot.action_limits` and `robot.max_speed` bound what is
published (an action beyond them is never sent: the node logs it and holds); the service `~/pause`
(std_srvs/SetBool) pauses and resumes; it publishes nothing while it has no policy, no instruction, or stale
inputs, and says why on `policy_status` (once a second), /diagnostics and in the log.

With `policy_node.publish_plan`, each chunk it samples (in every timing mode, dry run too) is also published as the
path the hand would take, a visualization_msgs/MarkerArray on policy_node/planned_path (docs/topics.md), stamped as
the observation it was sampled from: minivla_core/view.py computes the path, conversions.py builds the markers.

Parameters: the fields of PolicyNodeConfig (`policy_node.*`) and RobotConfig (`robot.*`).
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import torch
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.publisher import Publisher
from rclpy.timer import Timer
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64, Header, String
from std_srvs.srv import SetBool

from minivla_core.checkpoint import load_policy
from minivla_core.config import (
    PolicyNodeConfig, RobotConfig, check_policy_node_robot, observation_label, validated_replace)
from minivla_core.drivers import DRIVERS, Chunk, Command, Stop, TimedDriver, why_not_ready
from minivla_core.errors import ConfigError, InstructionError, MiniVLAError
from minivla_core.model.policy import PolicyRunner, sampler_for
from minivla_core.model.tokenizer import check_instruction
from minivla_core.sync import EpisodeStatus as StatusPart
from minivla_core.sync import ObservationAssembler, SyncedObservation
from minivla_core.view import LiveView, PolicyView, plan_hand_step, planned_hand_path
from minivla_ros import graph, qos
from minivla_ros.conversions import COMMAND_TYPES, chunk_to_msg, command_msgs, plan_markers, state_from_msg
from minivla_ros.images import image_from_msg
from minivla_ros.interfaces import check_interface, check_limits, has_gripper, joint_positions, position_from_pose
from minivla_ros.lifecycle import guard_transitions
from minivla_ros.msg import ActionChunk, ActionCommand, EpisodeStatus, PolicyStatus, RobotState
from minivla_ros.params import declare_section
from minivla_ros.spin import run_node

# Every change of instruction is logged, up to this many a second; a flood of changes is summarised
# (the current instruction is always on `policy_status`).
INSTRUCTION_LOGS_PER_SECOND = 5
UNCONFIGURED = "unconfigured (lifecycle: configure, then activate)"


def stamp_key(stamp) -> tuple[int, int]:
    """A builtin_interfaces/Time as a comparable pair."""
    return stamp.sec, stamp.nanosec


def seconds(key: tuple[int, int]) -> float:
    return key[0] + key[1] * 1e-9


def stamp_msg(key: tuple[int, int] | None) -> Time:
    """A (sec, nanosec) pair as a builtin_interfaces/Time (zero for None)."""
    return Time() if key is None else Time(sec=key[0], nanosec=key[1])


class PolicyNode(LifecycleNode):
    def __init__(self):
        super().__init__("policy_node")
        self.config = declare_section(self, "policy_node", PolicyNodeConfig(),
                                      changeable=graph.CHANGEABLE["policy_node"])
        self.robot = declare_section(self, "robot", RobotConfig())  # (each section validated by the schema)
        check_policy_node_robot(self.config, self.robot)
        self.timing = self.config.timing  # minivla_core/timing.py
        self.output = "timed action chunks" if self.timing == "timed" else "action commands"  # for its log
        self.period = 1.0 / self.config.control_rate
        torch.set_num_threads(max(1, self.config.threads))
        self.policy = self.driver = self.assembler = None
        self.instruction = ""  # the newest valid instruction, kept while unconfigured
        self.problem = UNCONFIGURED  # why it does not act (None: it does), as the status says
        self.paused = False
        self.episode_markers = 0  # robot.episode_topic: the n-th marker starts episode n-1
        self.cameras: list[str] = []
        self.command_pubs: list = []
        self.plan_pub = None  # policy_node.publish_plan: the planned path's publisher, when the robot allows one
        self.plan_step: float | None = None  # metres the hand moves per step for an action of 1 (the plan's scale)
        self.plan_problem = ""  # why the planned path is not published, though asked for
        self.view: LiveView | None = None  # policy_node.view_url / view_save: the rerun view, logged on its thread
        self.resources: list = []  # what configure made: subscriptions, publishers, the control timer
        self.instruction_log_times: deque[float] = deque(maxlen=INSTRUCTION_LOGS_PER_SECOND)
        self.unlogged_instructions = 0

        self.status_pub = self.create_publisher(PolicyStatus, graph.POLICY_STATUS.name,
                                                qos.profile(graph.POLICY_STATUS))
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.RELIABLE_QOS)
        self.create_subscription(String, graph.INSTRUCTION.name, self.on_instruction, qos.profile(graph.INSTRUCTION))
        self.create_subscription(EpisodeStatus, graph.EPISODE_STATUS.name, self.on_episode_status,
                                 qos.profile(graph.EPISODE_STATUS))
        self.create_service(SetBool, "~/pause", self.on_pause)
        self.create_timer(1.0, self.publish_status)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        guard_transitions(self)
        if self.config.instruction:
            self.set_instruction(self.config.instruction)
        if self.config.autostart and self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # --- lifecycle ----------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load and check the checkpoint; make the driver, the inputs' subscriptions and the command publishers."""
        if not self.load(self.config.checkpoint):
            return TransitionCallbackReturn.FAILURE
        exact = self.timing != "free"  # lockstep and timed: the parts of one observation share a stamp
        state_parts, labels = self.state_parts()
        self.assembler = ObservationAssembler(len(self.cameras), state_parts, exact and not self.robot.episode_topic,
                                              self.config.stale_after, exact, labels)
        driver_class = DRIVERS[self.timing]
        self.create_plan_publisher()
        self.create_view()
        common = dict(period=self.period, action_dim=self.policy.action_dim, publish=self.send, log=self.log,
                      check_limits=lambda action: check_limits(action, self.robot), gripper=has_gripper(self.robot),
                      planned=self.show_plan if self.plan_pub is not None or self.view is not None else None)
        if driver_class is TimedDriver:
            self.driver = TimedDriver(**common, horizon=self.policy.config.horizon,
                                      inpaint=self.config.seam == "inpaint",
                                      clock=lambda: self.get_clock().now().nanoseconds * 1e-9)
        else:
            self.driver = driver_class(**common)
        self.create_command_publishers()
        self.create_input_subscriptions()
        if self.timing == "free":
            self.resources.append(self.create_timer(self.period, self.tick))
        # Inputs that stop (a camera unplugged) are noticed even when no observation completes (lockstep, timed):
        # the robot is told to hold at once, not when the inputs come back.
        self.resources.append(self.create_timer(max(self.config.stale_after / 2, 0.01), self.ready_state))
        self.problem = "configured, not active (lifecycle: activate)"
        if self.instruction:
            self.set_instruction(self.instruction)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.driver.activate()
        self.get_logger().info("active: dry run, computing actions, commanding nothing" if self.config.dry_run else
                               "active: commanding the robot")
        if self.config.publish_plan:
            self.get_logger().info(f"publishing each planned chunk on {graph.PLANNED_PATH.name}" if self.plan_pub
                                   else f"not publishing the planned path: {self.plan_problem}")
        self.ready_state()  # the status says at once what, if anything, still stops it (not at an input)
        return super().on_activate(state)  # activates the command publishers

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.driver.deactivate()  # holds; nothing sampled before this is published after it
        self.get_logger().info("inactive: holding")
        self.ready_state()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        self.problem = UNCONFIGURED
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.driver is not None and self.driver.active:
            self.driver.deactivate()
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        if self.driver is not None:
            self.driver.close()
        if self.view is not None:
            self.view.close(timeout=2.0)  # what is queued, briefly: a viewer never holds up a transition for long
            if self.view.dropped:
                self.get_logger().info(f"the view fell behind and dropped {self.view.dropped} steps")
            self.view = None
        for resource in self.resources:
            if resource in self.command_pubs:
                self.destroy_lifecycle_publisher(resource)
            elif isinstance(resource, Publisher):
                self.destroy_publisher(resource)
            elif isinstance(resource, Timer):
                self.destroy_timer(resource)
            else:
                self.destroy_subscription(resource)
        self.resources, self.command_pubs, self.plan_pub = [], [], None
        self.policy = self.driver = self.assembler = None

    def on_pause(self, request, response):
        """~/pause (std_srvs/SetBool): true pauses commanding (the robot holds), false resumes. A simulator's episode
        clock does not pause with it: its episode may time out meanwhile (the log says so)."""
        self.paused = request.data
        response.success, response.message = True, "paused" if self.paused else "resumed"
        self.get_logger().info("paused: the robot holds (a simulator's episode clock runs on: its episode may time "
                               "out)" if self.paused else "resumed")
        self.ready_state()  # pausing a commanding node holds the robot (ready_state)
        return response

    def create_command_publishers(self) -> None:
        robot = self.robot
        if self.timing == "timed":
            self.command_pubs = [self.create_lifecycle_publisher(ActionChunk, graph.ACTION_CHUNK.name,
                                                                 qos.profile(graph.ACTION_CHUNK))]
        elif robot.action_type == "ActionCommand":
            self.command_pubs = [self.create_lifecycle_publisher(ActionCommand, graph.ACTION.name,
                                                                 qos.profile(graph.ACTION))]
        else:
            self.command_pubs = [self.create_lifecycle_publisher(COMMAND_TYPES[robot.action_type], robot.action_topic,
                                                                 qos.RELIABLE_QOS)]
            if robot.gripper_topic:
                self.command_pubs.append(self.create_lifecycle_publisher(Float64, robot.gripper_topic,
                                                                         qos.RELIABLE_QOS))
        self.resources += self.command_pubs

    def create_plan_publisher(self) -> None:
        """policy_node.publish_plan: the planned path's publisher, if the state starts with the hand's position and
        the action is a hand velocity (else plan_problem says why)."""
        robot = self.robot
        state_is_hand = (self.observation in ("proprio", "full") if robot.state_type == "RobotState"
                         else bool(robot.state_pose_topic))  # PoseAndJoints: the pose's x, y, z come first
        self.plan_step, self.plan_problem = plan_hand_step(robot.action_type, state_is_hand, self.task,
                                                           robot.velocity_scale, self.config.control_rate)
        if not self.config.publish_plan or self.plan_step is None:
            return
        try:
            from visualization_msgs.msg import MarkerArray
        except ImportError:
            self.plan_problem = "visualization_msgs is not installed (pip: ros-jazzy-visualization-msgs)"
            self.get_logger().error(f"not publishing the planned path: {self.plan_problem}")
            return
        self.plan_pub = self.create_publisher(MarkerArray, graph.PLANNED_PATH.name, qos.profile(graph.PLANNED_PATH))
        self.resources.append(self.plan_pub)

    def create_view(self) -> None:
        """policy_node.view_url / view_save: the rerun view of what the policy sees and plans (minivla_core/view.py).
        A view that cannot start is logged, and the node commands as without it."""
        if not (self.config.view_url or self.config.view_save):
            return
        try:
            view = PolicyView(self.config.view_url, self.config.view_save, "policy_node.view_url", "minivla_run")
        except ConfigError as exc:
            self.get_logger().error(f"no view: {exc}")
            return
        self.view = LiveView(view, lambda text: self.get_logger().warning(text, throttle_duration_sec=5.0))
        self.view.describe(self.cameras, self.plan_step)
        where = " and ".join(filter(None, [self.config.view_url, self.config.view_save]))
        self.get_logger().info(f"showing what the policy sees and plans in rerun: {where}"
                               + ("" if self.plan_step else f" (no hand path: {self.plan_problem})"))

    def create_input_subscriptions(self) -> None:
        robot = self.robot
        image_type = CompressedImage if robot.camera_type == "CompressedImage" else Image
        subscriptions = []
        if robot.episode_topic:  # first: messages ready at once are taken in this order, and the bridge publishes an
            # episode's start before its first observation
            subscriptions.append(self.create_subscription(Header, robot.episode_topic, self.on_episode_start,
                                                          qos.LATCHED_SUBSCRIPTION_QOS))
        for index, camera in enumerate(self.cameras):
            topic = robot.camera_topics[index] if robot.camera_topics else graph.image_topic(camera, index == 0)
            subscriptions.append(self.create_subscription(
                image_type, topic, lambda msg, index=index: self.on_image(msg, index), qos.profile(graph.IMAGE)))
        if robot.state_type == "RobotState":
            subscriptions.append(self.create_subscription(RobotState, graph.STATE.name, self.on_state,
                                                          qos.profile(graph.STATE)))
        else:
            if robot.state_pose_topic:
                subscriptions.append(self.create_subscription(PoseStamped, robot.state_pose_topic, self.on_pose,
                                                              qos.SENSOR_QOS))
            if robot.state_joint_topic:
                subscriptions.append(self.create_subscription(JointState, robot.state_joint_topic, self.on_joints,
                                                              qos.SENSOR_QOS))
        self.resources += subscriptions

    def state_parts(self) -> tuple[list[str], dict[str, str]]:
        """The inputs whose numbers make the state, in order, and how the log names each input."""
        labels = {f"camera {i}": "camera image" if camera == "camera" else f"{camera} camera image"
                  for i, camera in enumerate(self.cameras)}  # (a robot bag's camera is called "camera")
        if self.robot.state_type == "RobotState":
            return ["state"], labels | {"state": "robot state"}
        parts = [part for part, topic in (("pose", self.robot.state_pose_topic),
                                          ("joints", self.robot.state_joint_topic)) if topic]
        return parts, labels | {"pose": self.robot.state_pose_topic, "joints": self.robot.state_joint_topic}

    # --- inputs -------------------------------------------------------------------------------
    def load(self, checkpoint: str) -> bool:
        """Load the checkpoint and check the robot interface against it; False (and the reason logged) if not."""
        path = graph.resolve_path(checkpoint)
        try:
            self.policy, payload = load_policy(path)
        except MiniVLAError as exc:
            self.policy, self.problem = None, f"no policy loaded: {exc}"
            self.get_logger().error(self.problem)
            return False
        self.image_size, self.state_dim = payload["env"]["image_size"], payload["state_dim"]
        self.observation = payload["env"]["observation"]
        self.task = payload["env"]["task"]
        self.cameras = [payload["env"]["camera"], *payload["env"]["extra_cameras"]]
        try:
            check_interface(self.robot, self.policy.action_dim, self.state_dim, len(self.cameras))
        except ValueError as exc:
            self.policy, self.problem = None, f"no policy loaded: the robot interface does not fit {path}: {exc}"
            self.get_logger().error(self.problem)
            return False
        # The samplers are built now (a second or two), not when the first instruction arrives, where it would hold up
        # the first answer: the runner built then, and its first sample_continuing, find them with the policy.
        steps = self.config.inference_steps or self.policy.config.inference_steps
        sampler_for(self.policy, steps, self.config.engine)
        if self.timing == "timed" and self.config.seam == "inpaint":
            sampler_for(self.policy, steps, self.config.engine, inpainting=True)
        tasks = payload["env"].get("tasks") or [payload["env"]["task"]]
        state = ("the robot's own state" if self.observation == "robot" else
                 f"{observation_label(self.observation)} robot state")
        self.get_logger().info(f"loaded {path} (trained on {', '.join(tasks)}, "
                               f"{self.image_size}px {' and '.join(self.cameras)} images, {state})")
        return True

    def on_image(self, msg: Image, index: int) -> None:
        if self.assembler is not None:
            self.take(f"camera {index}", msg, lambda: image_from_msg(msg, self.image_size),
                      f"{self.cameras[index]} camera image")

    def on_state(self, msg: RobotState) -> None:
        if self.assembler is not None:
            self.take("state", msg, lambda: state_from_msg(msg, self.state_dim, self.observation), "robot state")

    def on_pose(self, msg: PoseStamped) -> None:
        if self.assembler is not None:
            self.take("pose", msg, lambda: position_from_pose(msg), self.robot.state_pose_topic)

    def on_joints(self, msg: JointState) -> None:
        if self.assembler is not None:
            self.take("joints", msg, lambda: joint_positions(msg, self.robot.state_joints),
                      self.robot.state_joint_topic)

    def on_episode_status(self, msg: EpisodeStatus) -> None:
        if self.view is not None and msg.done:
            self.view.end_episode(msg.success, msg.step)
        if self.robot.episode_topic or self.assembler is None:
            return  # the episodes come from robot.episode_topic
        if self.timing == "free":
            self.new_episode(msg.episode, stamp_key(msg.header.stamp))
        else:  # the status is part of the observation of its stamp; the episode starts when that one is complete
            self.take("status", msg, lambda: StatusPart(msg.episode, msg.step, msg.done), "episode status")

    def on_episode_start(self, msg: Header) -> None:
        """robot.episode_topic: an episode starts with the observation of this stamp."""
        self.episode_markers += 1
        self.new_episode(self.episode_markers - 1, stamp_key(msg.stamp))

    def take(self, part: str, msg, convert, what: str) -> None:
        """One input, converted (a bad one is dropped, and said); with exact stamps, the observation it completes is
        handed to the driver."""
        try:
            value = convert()
        except ValueError as exc:
            self.get_logger().error(f"dropping {what}: {exc}", throttle_duration_sec=1.0)
            return
        observation = self.assembler.put(part, stamp_key(msg.header.stamp), value, time.monotonic())
        if observation is None:
            return
        if observation.episode is not None:
            self.new_episode(observation.episode, observation.stamp)
        observation.episode = self.driver.episode
        if self.ready_state() is not None:
            if self.view is not None:
                self.view.observe(observation.images, observation.state, seconds(observation.stamp))
            self.driver.observe(observation)

    def new_episode(self, episode: int, first_stamp: tuple[int, int]) -> None:
        """Another episode started with the observation of `first_stamp`: the rest of the current chunk was planned for
        the scene before it, and the noise restarts at the episode's seed."""
        if self.driver.new_episode(episode):
            self.assembler.start_episode(first_stamp)
            if self.view is not None:
                self.view.start_episode(self.task, episode, self.instruction, self.cameras, self.plan_step)

    def tick(self) -> None:
        """Free timing: one command per control tick, from the newest inputs."""
        if self.ready_state() is not None:
            observation = self.assembler.newest()
            if self.view is not None and observation is not None:
                self.view.observe(observation.images, observation.state, seconds(observation.stamp))
            self.driver.tick(observation)

    def ready_state(self) -> str | None:
        """"ready" if the node can act; else None (the reason is logged when it changes, and once it can again:
        "publishing ...")."""
        stale = self.assembler.why_stale(time.monotonic()) if self.assembler is not None else None
        problem = why_not_ready((self.problem or "no policy loaded") if self.policy is None else None,
                                self.driver is not None and self.driver.active, self.paused,
                                self.driver is not None and self.driver.runner is not None, stale)
        if problem != self.problem:  # log changes only (rclpy wants one severity per call site)
            if problem is None:
                self.get_logger().info(f"publishing {self.output}")
            else:
                self.get_logger().warning(f"not acting: {problem}")
            if self.problem is None and problem is not None and self.driver is not None and self.driver.active:
                self.driver.hold()  # it was commanding: a robot that keeps its last velocity must stop now
            self.problem = problem
        return None if problem is not None else "ready"

    # --- outputs ------------------------------------------------------------------------------
    def send(self, output) -> None:
        """What a driver decided, as messages (called on the sampling thread too: publishing is thread-safe)."""
        if isinstance(output, Command) and self.view is not None:  # (in dry run too: what it would send)
            self.view.action(output.action, output.step_in_chunk)
        if isinstance(output, Stop):
            if self.robot.action_type != "TwistStamped" or not self.command_pubs:
                return  # a trajectory or forward command controller holds its last target; the simulator holds too
            messages = command_msgs(output.action, self.robot, self.get_clock().now().to_msg(), self.period)
            what = "hold"
        elif isinstance(output, Chunk):
            messages = [chunk_to_msg(output.actions, output.first_due, output.period, output.episode,
                                     stamp_msg(output.observation_stamp), output.number, output.frozen)]
            what = f"chunk {output.number} of episode {output.episode}"
        elif isinstance(output, Command) and self.robot.action_type == "ActionCommand":
            msg = ActionCommand()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.action, msg.chunk, msg.step_in_chunk = output.action.tolist(), output.chunk, output.step_in_chunk
            msg.observation_stamp = stamp_msg(output.observation_stamp)
            messages, what = [msg], np.round(output.action, 3).tolist()
        else:  # standard messages: in lockstep stamped as the observation they answer (the bridge steps on it)
            stamp = (stamp_msg(output.observation_stamp) if self.timing == "lockstep"
                     else self.get_clock().now().to_msg())
            messages, what = command_msgs(output.action, self.robot, stamp, self.period), \
                np.round(output.action, 3).tolist()
        if self.config.dry_run:
            self.get_logger().info(f"dry run, not sent: {what}", throttle_duration_sec=1.0)
            return
        for publisher, msg in zip(self.command_pubs[::-1], messages[::-1]):  # the gripper first: with the motion
            publisher.publish(msg)  # that follows, a robot applying the newest command has both

    def show_plan(self, observation: SyncedObservation, actions: np.ndarray) -> None:
        """A new chunk (the drivers' `planned`): published as the path the hand would take from where the observation
        saw it (the part executed before the next chunk is its first n_action_steps), and shown in the view with
        its denoising, which the view's thread computes again from what this sampling call drew (its noise)."""
        runner = self.driver.runner if self.driver is not None else None
        if self.plan_pub is not None:
            executed = min(runner.n_action_steps, len(actions)) if runner is not None else len(actions)
            path = planned_hand_path(observation.state, actions, self.plan_step)
            self.plan_pub.publish(plan_markers(path, self.robot.action_frame, stamp_msg(observation.stamp), executed))
        if self.view is not None and runner is not None:
            sampling, images, state = runner.last_sampling, observation.images, observation.state
            self.view.chunk(state, actions, runner.last_sample_seconds,
                            lambda: runner.denoising(images, state, sampling), seconds(observation.stamp))

    def log(self, level: str, text: str) -> None:
        logger = self.get_logger()
        if level == "error":
            logger.error(text, throttle_duration_sec=1.0)
        else:
            logger.warning(text, throttle_duration_sec=5.0)

    # --- instruction and parameters -------------------------------------------------------------
    def on_instruction(self, msg: String) -> None:
        self.set_instruction(msg.data)

    def on_set_parameters(self, parameters):
        """policy_node.instruction, inference_steps, n_action_steps and stale_after take effect at the next tick:
        checked by the schema, then against the loaded checkpoint."""
        changes = {p.name.split(".", 1)[1]: p.value for p in parameters}
        try:
            config = validated_replace(self.config, "policy_node", **changes)
            if "instruction" in changes:
                check_instruction(config.instruction)
        except (ConfigError, InstructionError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        model = self.policy.config if self.policy else None
        if model and config.n_action_steps > model.horizon:
            return SetParametersResult(successful=False, reason=f"policy_node.n_action_steps must be in "
                                       f"0..{model.horizon} (0 = the checkpoint's)")
        if model and config.inference_steps > model.diffusion_steps:
            return SetParametersResult(successful=False, reason=f"policy_node.inference_steps must be in "
                                       f"0..{model.diffusion_steps} (0 = the checkpoint's)")
        self.config = config
        if self.assembler is not None:
            self.assembler.stale_after = self.config.stale_after
        if self.driver is not None and self.policy is not None:
            defaults, config, timed = self.policy.config, self.config, self.timing == "timed"

            def apply(runner):
                runner.n_action_steps = config.n_action_steps or defaults.n_action_steps
                runner.inference_steps = config.inference_steps or defaults.inference_steps
                if timed and config.seam == "inpaint":
                    runner.prepare_continuing()
            self.driver.update_runner(apply)
        if changes.get("instruction"):
            self.set_instruction(changes["instruction"])
        return SetParametersResult(successful=True)

    def set_instruction(self, text: str) -> None:
        try:
            check_instruction(text)
        except InstructionError as exc:
            self.get_logger().error(f"ignoring {exc}; keeping the previous one", throttle_duration_sec=1.0)
            return
        runner = self.driver.runner if self.driver is not None else None
        if runner is not None and text == runner.instruction:
            return  # the same instruction again (publishers repeat it): nothing changes, nothing to log
        if self.policy is None:  # kept for when the node is configured
            self.instruction = text
            if not self.problem.startswith("unconfigured"):
                self.get_logger().warning(f"instruction {text!r} received, but {self.problem}",
                                          throttle_duration_sec=1.0)
            return
        unknown: list[str] = []
        try:
            if runner is None:
                runner = PolicyRunner(self.policy, text, self.config.n_action_steps or None,
                                      self.config.inference_steps or None, self.config.seed, engine=self.config.engine)
                unknown = runner.unknown_words
                self.driver.set_runner(runner)
            else:
                self.driver.update_runner(lambda runner: unknown.extend(runner.set_instruction(text)))
        except (MiniVLAError, ValueError) as exc:
            self.get_logger().error(f"ignoring instruction: {exc}")
            return
        self.instruction = text
        self.log_instruction(text, unknown)

    def log_instruction(self, text: str, unknown: list[str]) -> None:
        now = time.monotonic()
        times = self.instruction_log_times
        if len(times) == times.maxlen and now - times[0] < 1.0:
            self.unlogged_instructions += 1
            return
        times.append(now)
        note = f" (words not in the vocabulary, read as <unk>: {', '.join(unknown)})" if unknown else ""
        if self.unlogged_instructions:
            note += f" ({self.unlogged_instructions} earlier changes not logged: too many a second)"
            self.unlogged_instructions = 0
        self.get_logger().info(f"instruction: {text!r}{note}")

    # --- status -----------------------------------------------------------------------------------
    def publish_status(self) -> None:
        msg = PolicyStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.active = self.problem is None and not self.config.dry_run
        msg.reason = self.problem or ("dry run: computing actions, commanding nothing" if self.config.dry_run else "")
        msg.control_rate = float(self.config.control_rate)
        if self.driver is not None:
            for name, value in self.driver.stats.summary().items():
                setattr(msg, name, value)
        runner = self.driver.runner if self.driver is not None else None
        msg.instruction = runner.instruction if runner is not None else self.instruction
        self.status_pub.publish(msg)
        self.publish_diagnostics(msg)

    def publish_diagnostics(self, status: PolicyStatus) -> None:
        """The same health as diagnostic_msgs, for rqt_robot_monitor and diagnostic aggregators: OK while
        commanding, WARN while it could but does not (no instruction, stale input, inactive, paused, dry run),
        ERROR without a policy."""
        level = (DiagnosticStatus.OK if status.active else
                 DiagnosticStatus.ERROR if self.policy is None else DiagnosticStatus.WARN)
        values = {"control_rate": status.control_rate, "achieved_rate": round(status.achieved_rate, 2),
                  "sampling_latency_p50_ms": round(status.sampling_latency_p50_ms, 2),
                  "sampling_latency_p99_ms": round(status.sampling_latency_p99_ms, 2),
                  "ticks": status.ticks, "dropped_ticks": status.dropped_ticks, "instruction": status.instruction,
                  "checkpoint": self.config.checkpoint, "dry_run": self.config.dry_run, "paused": self.paused}
        report = DiagnosticStatus(level=level, name=f"{self.get_name()}: policy", hardware_id=self.get_name(),
                                  message=status.reason or "commanding",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[report])
        array.header.stamp = status.header.stamp
        self.diagnostics_pub.publish(array)


def main(args=None) -> None:
    run_node(PolicyNode, args)


if __name__ == "__main__":
    main()
