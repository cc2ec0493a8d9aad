"""Policy node: the diffusion policy driving the arm at a fixed control rate.

It keeps the newest camera images (one per camera the checkpoint was trained with), robot state and
instruction. On a timer at `policy_node.control_rate` it publishes one action command, taken from
the current action chunk; a new chunk is sampled (DDIM, `policy_node.inference_steps` steps) when
the executed part (`policy_node.n_action_steps` actions) is used up. It publishes nothing while it
has no policy, no instruction, or stale inputs, and says why on `policy_status` (once a second) and
in the log.

Which topics and messages carry the images, the state and the commands is the robot interface, the
`robot.*` parameters (RobotConfig; minivla_ros/interfaces.py): by default the simulator's own
(camera/image_raw, robot_state, action_command); for any robot, sensor_msgs/Image or CompressedImage
of any size, a PoseStamped and named JointState joints, and TwistStamped, JointTrajectory or
Float64MultiArray commands with a std_msgs/Float64 gripper command. The interface is checked against
the checkpoint when it loads: a mismatch (a state of the wrong length, too few camera topics) is named
and nothing is commanded.

It is a managed (lifecycle) node, as anything commanding hardware should be: `configure` loads the
checkpoint and checks it against the robot interface (a failure names the reason and leaves the node
unconfigured), `activate` starts commanding, `deactivate` holds (a zero velocity for TwistStamped,
nothing more for the others), `cleanup` lets the checkpoint go. With `policy_node.autostart` (the
default) it configures and activates itself; otherwise `ros2 lifecycle set /policy_node configure`
and `activate`. Further safety, as users of real arms expect: `policy_node.dry_run` computes and
logs actions but commands nothing; `robot.action_limits` and `robot.max_speed` bound what is
published (an action beyond them is never sent: the node logs it and holds); the service
`~/pause` (std_srvs/SetBool) pauses and resumes commanding; /diagnostics carries a
diagnostic_msgs/DiagnosticArray with the node's health next to policy_status.

With `policy_node.timing` lockstep (for a simulator bridge in lockstep: `minivla run`) there is no control timer:
the node answers each observation, the camera images and the state of one stamp (with our own messages also the
episode_status of that stamp, which says which episode it belongs to and whether it is its last), with one
command stamped as that observation (ActionCommand: observation_stamp). It never acts on an episode's final
observation, nor on one older than the newest episode's start. At each episode's start (episode_status, or a
message on robot.episode_topic: the n-th is episode n-1) the chunk is dropped and the sampler's noise restarts
at the episode's seed, as `minivla eval` does: in lockstep the graph then plays every episode as eval does.

With `policy_node.timing` timed (a real robot's clock; the bridge with bridge.timing timed executes) there is no
control timer either: it publishes whole chunks (minivla_ros/ActionChunk on action_chunk), each action with its due
time, and a sampling thread of its own samples the next one ahead, as the current one runs out: the new chunk is
ready when the robot has executed `n_action_steps` actions of the old one, however long sampling takes (its
latency is measured as it goes). The actions due while a chunk is being sampled are the old chunk's; with
`policy_node.seam` inpaint the new chunk keeps them and continues from them (real-time chunking), so the two meet
without a jump. Inputs are synchronised by stamp as in lockstep; a chunk names its episode, and the robot applies
no action of another (minivla_core/timed.py).

Parameters: the fields of PolicyNodeConfig (`policy_node.*`) and RobotConfig (`robot.*`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.timer import Timer
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64, Header, String
from std_srvs.srv import SetBool

from minivla_core.checkpoint import load_policy
from minivla_core.config import CHOICES, PolicyNodeConfig, RobotConfig, check_timing, observation_label
from minivla_core.actions import check_action
from minivla_core.errors import InstructionError, MiniVLAError
from minivla_core.model.policy import PolicyRunner, sampler_for
from minivla_core.model.tokenizer import check_instruction
from minivla_core.timed import ChunkSchedule
from minivla_ros import graph, qos
from minivla_ros.conversions import (
    COMMAND_TYPES, chunk_to_msg, command_msgs, stamp_from_seconds, stamp_to_seconds, state_from_msg)
from minivla_ros.images import image_from_msg
from minivla_ros.interfaces import (
    assemble_state, check_interface, check_limits, joint_positions, position_from_pose)
from minivla_ros.msg import ActionChunk, ActionCommand, EpisodeStatus, PolicyStatus, RobotState
from minivla_ros.params import declare_section, resolve_path
from minivla_ros.spin import run_node

# Every change of instruction is logged, up to this many a second; a flood of changes is summarised
# (the current instruction is always on `policy_status`).
INSTRUCTION_LOGS_PER_SECOND = 5


def stamp_key(stamp) -> tuple[int, int]:
    """A builtin_interfaces/Time as a comparable pair."""
    return stamp.sec, stamp.nanosec


class PolicyNode(LifecycleNode):
    def __init__(self):
        super().__init__("policy_node")
        self.config = declare_section(self, "policy_node", PolicyNodeConfig(),
                                      changeable=graph.CHANGEABLE["policy_node"])
        self.robot = declare_section(self, "robot", RobotConfig())
        timing = check_timing(self.config.timing, "policy_node.timing")
        self.lockstep, self.timed = timing == "lockstep", timing == "timed"
        self.output = "timed action chunks" if self.timed else "action commands"  # what it publishes, for its log
        if self.timed and (self.robot.action_type != "ActionCommand" or self.robot.episode_topic):
            raise ValueError("policy_node.timing timed publishes minivla_ros/ActionChunk and reads episode_status: "
                             "use robot.action_type ActionCommand and no robot.episode_topic")
        if self.config.seam not in CHOICES["policy_node.seam"]:
            raise ValueError(f"policy_node.seam must be one of {', '.join(CHOICES['policy_node.seam'])}, got "
                             f"{self.config.seam!r}")
        if self.config.extra_delay < 0:
            raise ValueError(f"policy_node.extra_delay must be >= 0 seconds, got {self.config.extra_delay}")
        self.runner_lock = threading.Lock()  # timed: the sampling thread and the callbacks share the runner
        self.sampler_thread: threading.Thread | None = None
        torch.set_num_threads(max(1, self.config.threads))
        self.policy = None
        self.runner: PolicyRunner | None = None
        self.instruction = ""  # the newest valid instruction, kept while unconfigured
        self.problem = "unconfigured (lifecycle: configure, then activate)"
        self.activated = self.paused = False
        self.last_action: np.ndarray | None = None  # the newest published
        self.episode = None  # the episode number: episode_status's, or messages on robot.episode_topic counted from 0
        self.episode_start = (0, 0)  # stamp of the current episode's first observation
        self.cameras: list[str] = []
        self.command_pubs: list = []
        self.resources: list = []  # subscriptions, publishers and the control timer made by configure
        self.period = 1.0 / self.config.control_rate
        self.tick_times: deque[float] = deque(maxlen=int(10 * self.config.control_rate))
        self.latencies: deque[float] = deque(maxlen=200)
        self.ticks = self.dropped_ticks = 0
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
        if self.config.instruction:
            self.set_instruction(self.config.instruction)
        self.schedule: ChunkSchedule | None = None  # timed: made with the runner (it needs the checkpoint's sizes)
        self.newest_observation = None  # timed: (stamp, episode, step, images, state), for the sampling thread
        self.observation_ready = threading.Condition()
        if self.config.autostart and self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # --- lifecycle ----------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load and check the checkpoint; subscribe to the robot's inputs; make the command publishers."""
        if not self.load(self.config.checkpoint):
            return TransitionCallbackReturn.FAILURE
        self.images = [None] * len(self.cameras)  # newest image of each camera, scene camera first
        self.image_times = [-float("inf")] * len(self.cameras)
        self.state, self.state_time = None, -float("inf")
        self.pose = self.joints = None  # robot.state_type PoseAndJoints: the newest of each, and when
        self.pose_time = self.joints_time = -float("inf")
        self.image_stamp = self.chunk_stamp = None  # of the scene camera's newest image / the current chunk's
        # Lockstep: the stamp of the newest message of each input (and of episode_status: episode, final or not), and
        # of the newest observation answered.
        self.input_stamps: dict[str, tuple[int, int]] = {}
        self.status_of_stamp: tuple[tuple[int, int], int, bool] | None = None
        self.answered = None
        self.create_command_publishers()
        self.create_input_subscriptions()
        if self.timed:
            self.start_sampler_thread()
        elif not self.lockstep:
            self.resources.append(self.create_timer(self.period, self.tick))
        self.problem = "configured, not active (lifecycle: activate)"
        if self.instruction:
            self.set_instruction(self.instruction)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.activated = True
        self.get_logger().info("active: commanding the robot")
        self.ready_state(self.output)  # the status says at once what, if anything, still stops it (not at an input)
        return super().on_activate(state)  # activates the command publishers

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.hold()
        self.activated = False
        self.get_logger().info("inactive: holding")
        self.ready_state(self.output)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        self.problem = "unconfigured (lifecycle: configure, then activate)"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.activated:
            self.hold()
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        self.stop_sampler_thread()
        for resource in self.resources:
            if isinstance(resource, Timer):
                self.destroy_timer(resource)
            elif resource in self.command_pubs:
                self.destroy_lifecycle_publisher(resource)
            else:
                self.destroy_subscription(resource)
        self.resources, self.command_pubs = [], []
        self.policy = self.runner = None
        self.activated = False

    def hold(self) -> None:
        """Stop the robot where it is: a zero velocity for a TwistStamped robot, a chunk of standing still in timed
        timing (it replaces the actions the robot still holds); a trajectory or forward command controller holds its
        last target by itself, and the simulator holds when commands stop."""
        if self.timed and self.command_pubs and self.policy is not None and self.episode is not None:
            self.publish_stop_chunk()
        elif self.robot.action_type == "TwistStamped" and self.command_pubs and self.policy is not None:
            stop = np.zeros(self.policy.action_dim)
            stop[-1] = self.last_action[-1] if self.last_action is not None else -1.0  # the gripper stays as it is
            self.command_pubs[0].publish(command_msgs(stop, self.robot, self.get_clock().now().to_msg(),
                                                      self.period)[0])
        if self.runner is not None:
            with self.runner_lock:
                self.runner.reset()
            self.schedule_reset()

    def on_pause(self, request, response):
        """~/pause (std_srvs/SetBool): true pauses commanding (the robot holds), false resumes."""
        if request.data and not self.paused and self.activated:
            self.hold()
        self.paused = request.data
        response.success, response.message = True, "paused" if self.paused else "resumed"
        self.get_logger().info(response.message)
        return response

    def create_command_publishers(self) -> None:
        robot = self.robot
        if self.timed:
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

    # --- inputs -------------------------------------------------------------------------------
    def load(self, checkpoint: str) -> bool:
        """Load the checkpoint and check the robot interface against it; False (and the reason logged) if not."""
        path = resolve_path(checkpoint)
        try:
            self.policy, payload = load_policy(path)
        except MiniVLAError as exc:
            self.policy, self.problem = None, f"no policy loaded: {exc}"
            self.get_logger().error(self.problem)
            return False
        self.image_size, self.state_dim = payload["env"]["image_size"], payload["state_dim"]
        self.observation = payload["env"]["observation"]
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
        if self.timed and self.config.seam == "inpaint":
            sampler_for(self.policy, steps, self.config.engine, inpainting=True)
        tasks = payload["env"].get("tasks") or [payload["env"]["task"]]
        self.get_logger().info(f"loaded {path} (trained on {', '.join(tasks)}, "
                               f"{self.image_size}px {' and '.join(self.cameras)} images, "
                               f"{observation_label(self.observation)} robot state)")
        return True

    def on_image(self, msg: Image, index: int) -> None:
        if self.policy is None:
            return
        try:
            self.images[index] = image_from_msg(msg, self.image_size)
        except ValueError as exc:
            self.get_logger().error(f"dropping {self.cameras[index]} camera image: {exc}", throttle_duration_sec=1.0)
            return
        self.image_times[index] = time.monotonic()
        if index == 0:
            self.image_stamp = msg.header.stamp
        self.have_input(f"camera {index}", msg.header.stamp)

    def on_state(self, msg: RobotState) -> None:
        if self.policy is None:
            return
        try:
            self.state = state_from_msg(msg, self.state_dim, self.observation)
        except ValueError as exc:
            self.get_logger().error(f"dropping robot state: {exc}", throttle_duration_sec=1.0)
            return
        self.state_time = time.monotonic()
        self.have_input("state", msg.header.stamp)

    def on_pose(self, msg: PoseStamped) -> None:
        if self.policy is None:
            return
        try:
            self.pose = position_from_pose(msg)
        except ValueError as exc:
            self.get_logger().error(f"dropping {self.robot.state_pose_topic}: {exc}", throttle_duration_sec=1.0)
            return
        self.pose_time = time.monotonic()
        self.have_input("pose", msg.header.stamp)

    def on_joints(self, msg: JointState) -> None:
        if self.policy is None:
            return
        try:
            self.joints = joint_positions(msg, self.robot.state_joints)
        except ValueError as exc:
            self.get_logger().error(f"dropping {self.robot.state_joint_topic}: {exc}", throttle_duration_sec=1.0)
            return
        self.joints_time = time.monotonic()
        self.have_input("joints", msg.header.stamp)

    def on_instruction(self, msg: String) -> None:
        self.set_instruction(msg.data)

    def on_set_parameters(self, parameters):
        """policy_node.instruction, inference_steps, n_action_steps and stale_after take effect at the next tick."""
        changes = {p.name.split(".", 1)[1]: p.value for p in parameters}
        horizon = self.policy.config.horizon if self.policy else None
        if "n_action_steps" in changes and horizon and not 0 <= changes["n_action_steps"] <= horizon:
            return SetParametersResult(successful=False, reason=f"policy_node.n_action_steps must be in 0..{horizon} "
                                                                  f"(0 = the checkpoint's)")
        if "inference_steps" in changes and self.policy and not (
                0 <= changes["inference_steps"] <= self.policy.config.diffusion_steps):
            return SetParametersResult(successful=False, reason=f"policy_node.inference_steps must be in "
                                       f"0..{self.policy.config.diffusion_steps} (0 = the checkpoint's)")
        if "stale_after" in changes and not changes["stale_after"] > 0:
            return SetParametersResult(successful=False, reason="policy_node.stale_after must be > 0 seconds")
        if "instruction" in changes:
            try:
                check_instruction(changes["instruction"])
            except InstructionError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        self.config = dataclasses.replace(self.config, **changes)
        if self.runner is not None:
            self.runner.n_action_steps = self.config.n_action_steps or self.policy.config.n_action_steps
            with self.runner_lock:
                self.runner.inference_steps = self.config.inference_steps or self.policy.config.inference_steps
                self.runner.reset()
                if self.timed and self.config.seam == "inpaint":
                    self.runner.prepare_continuing()
            self.schedule_reset()
        if changes.get("instruction"):
            self.set_instruction(changes["instruction"])
        return SetParametersResult(successful=True)

    def set_instruction(self, text: str) -> None:
        try:
            check_instruction(text)
        except InstructionError as exc:
            self.get_logger().error(f"ignoring {exc}; keeping the previous one", throttle_duration_sec=1.0)
            return
        if self.runner is not None and text == self.runner.instruction:
            return  # the same instruction again (publishers repeat it): nothing changes, nothing to log
        if self.policy is None:  # kept for when the node is configured
            self.instruction = text
            if not self.problem.startswith("unconfigured"):
                self.get_logger().warning(f"instruction {text!r} received, but {self.problem}",
                                          throttle_duration_sec=1.0)
            return
        try:
            if self.runner is None:
                self.runner = PolicyRunner(self.policy, text, self.config.n_action_steps or None,
                                           self.config.inference_steps or None, self.config.seed,
                                           engine=self.config.engine)
                self.runner.reset(self.episode)
                unknown = self.runner.unknown_words
            else:
                unknown = self.runner.set_instruction(text)
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

    def on_episode_status(self, msg: EpisodeStatus) -> None:
        if self.robot.episode_topic or self.policy is None:
            return  # the episodes come from robot.episode_topic
        if not (self.lockstep or self.timed):
            self.new_episode(msg.episode, msg.header.stamp)
            return
        # Lockstep and timed: the status is part of the observation of its stamp; the episode starts when that one is
        # answered.
        self.status_of_stamp = (stamp_key(msg.header.stamp), msg.episode, msg.done, msg.step)
        self.have_input("status", msg.header.stamp)

    def on_episode_start(self, msg: Header) -> None:
        """robot.episode_topic: an episode starts with the observation of this stamp."""
        self.new_episode(0 if self.episode is None else self.episode + 1, msg.stamp)

    def new_episode(self, episode: int, first_stamp) -> None:
        """Another episode started with the observation of `first_stamp`: the rest of the current chunk was planned for
        the scene before it, and the noise restarts at the episode's seed."""
        if episode != self.episode:
            self.episode, self.episode_start = episode, stamp_key(first_stamp)
            if self.runner is not None:
                with self.runner_lock:
                    self.runner.reset(episode)

    # --- control loop -------------------------------------------------------------------------
    def tick(self) -> None:
        """Free timing: one command per control tick, from the newest inputs, stamped with the tick's time."""
        now = time.monotonic()
        if self.tick_times and now - self.tick_times[-1] > 1.5 * self.period:
            self.dropped_ticks += int(round((now - self.tick_times[-1]) / self.period)) - 1
        self.tick_times.append(now)
        self.ticks += 1
        self.act(self.get_clock().now().to_msg(), observation=None)

    def have_input(self, name: str, stamp) -> None:
        """Lockstep and timed: one more input of the observation of `stamp`; once it is complete, lockstep answers
        it, timed hands it to the sampling thread."""
        if not (self.lockstep or self.timed):
            return
        self.input_stamps[name] = stamp_key(stamp)
        wanted = [f"camera {i}" for i in range(len(self.cameras))]
        if self.robot.state_type == "RobotState":
            wanted.append("state")
        else:
            wanted += [name for name, topic in (("pose", self.robot.state_pose_topic),
                                                ("joints", self.robot.state_joint_topic)) if topic]
        if not self.robot.episode_topic:
            wanted.append("status")
        stamps = {self.input_stamps.get(name) for name in wanted}
        key = stamp_key(stamp)
        if stamps != {key} or key == self.answered or key < self.episode_start:
            return  # incomplete, answered already, or of an episode before the current one
        self.answered = key
        if not self.robot.episode_topic:
            _, episode, done, step = self.status_of_stamp
            if done:
                return  # an episode's final observation: the simulator goes on with the next, whatever comes
            self.new_episode(episode, stamp)
        if self.timed:
            self.offer_observation(stamp, step)
            return
        now = time.monotonic()
        self.tick_times.append(now)
        self.ticks += 1
        self.act(stamp, observation=stamp)

    def act(self, command_stamp, observation) -> None:
        """Publish the next action: stamped `command_stamp`; `observation` (lockstep) is the stamp of the
        observation it answers."""
        state = self.ready_state(self.output)
        if state is None:
            return
        try:
            action = check_action(self.runner.act(np.stack(self.images), state))
            check_limits(action, self.robot)
        except ValueError as exc:  # e.g. a finite but absurd state (1e20) driving the network to NaN
            self.get_logger().error(f"not acting: {exc}", throttle_duration_sec=1.0)
            self.runner.reset()  # the rest of a bad chunk is bad too
            self.hold()
            return
        if self.runner.step_in_chunk == 0:  # a new chunk was sampled from the current observation
            self.latencies.append(self.runner.last_sample_seconds)
            self.chunk_stamp = self.image_stamp
        if self.robot.action_type == "ActionCommand":
            msg = ActionCommand()
            msg.header.stamp = self.get_clock().now().to_msg() if observation is not None else command_stamp
            msg.action = action.tolist()
            msg.chunk = max(self.runner.chunk_index, 0)
            msg.step_in_chunk = self.runner.step_in_chunk
            msg.observation_stamp = observation if observation is not None else self.chunk_stamp
            messages = [msg]
        else:
            messages = command_msgs(action, self.robot, command_stamp, self.period)
        if self.config.dry_run:
            self.get_logger().info(f"dry run, not sent: {np.round(action, 3).tolist()}", throttle_duration_sec=1.0)
            return
        for publisher, msg in zip(self.command_pubs[::-1], messages[::-1]):  # the gripper first: with the motion
            publisher.publish(msg)  # that follows, a robot applying the newest command has both
        self.last_action = action

    # --- timed: chunks sampled ahead on a thread of their own -----------------------------------
    def start_sampler_thread(self) -> None:
        self.sampler_running = True
        self.sampler_thread = threading.Thread(target=self.sampling_loop, name="sampler", daemon=True)
        self.sampler_thread.start()

    def stop_sampler_thread(self) -> None:
        if self.sampler_thread is None:
            return
        with self.observation_ready:
            self.sampler_running = False
            self.observation_ready.notify()
        self.sampler_thread.join(timeout=5.0)
        self.sampler_thread = None

    def schedule_reset(self) -> None:
        """The next chunk starts afresh (new instruction, sampler settings, hold, an error)."""
        if self.schedule is not None:
            self.schedule.episode = None

    def offer_observation(self, stamp, step: int) -> None:
        """A complete observation (images and state of one stamp): the newest one is what the sampling thread
        samples from when the schedule says the next chunk is due."""
        state = self.ready_state(self.output)
        if state is None:
            return
        with self.observation_ready:
            self.newest_observation = (stamp, self.episode, step, np.stack(self.images), state)
            self.observation_ready.notify()

    def sampling_loop(self) -> None:
        """The sampling thread: wait for an observation; when the next chunk is due, sample it and publish it. An
        observation that came while a chunk was sampled is not used: the next one, at most a control step away, is
        fresher by almost a step, and sampling from the stale one would add its age to the latency (minivla_core/
        timed.py: run_timed_episode)."""
        while True:
            with self.observation_ready:
                while self.sampler_running and self.newest_observation is None:
                    self.observation_ready.wait(timeout=0.5)
                if not self.sampler_running:
                    return
                observation, self.newest_observation = self.newest_observation, None
            try:
                sampled = self.sample_timed_chunk(*observation)
            except Exception as exc:  # never let the thread die silently: the robot would hold forever
                self.get_logger().error(f"sampling failed: {exc}", throttle_duration_sec=1.0)
                continue
            if sampled:
                with self.observation_ready:
                    self.newest_observation = None  # came while sampling: wait for the next

    def publish_stop_chunk(self) -> None:
        """Timed: standing still (gripper as it is) from the next step on, for the robot's current episode."""
        stop = np.zeros((self.policy.config.horizon, self.policy.action_dim), dtype=np.float32)
        stop[:, -1] = self.last_action[-1] if self.last_action is not None else -1.0
        first_due = self.get_clock().now().nanoseconds * 1e-9 + self.period
        self.command_pubs[0].publish(chunk_to_msg(stop, first_due, self.period, self.episode,
                                                  stamp_from_seconds(first_due), chunk=2**32 - 1, frozen=0))

    def sample_timed_chunk(self, stamp, episode: int, step: int, images: np.ndarray, state: np.ndarray) -> bool:
        """Sample, check and publish a chunk from this observation if one is due; True if it sampled one."""
        observation_time = stamp_to_seconds(stamp)
        runner = self.runner
        horizon = self.policy.config.horizon
        if self.schedule is None or self.schedule.n_action_steps != runner.n_action_steps:
            self.schedule = ChunkSchedule(self.period, horizon, runner.n_action_steps)
        schedule = self.schedule
        planned = schedule.plan(observation_time, episode, step, inpaint=self.config.seam == "inpaint")
        if planned is None:
            return False  # not due yet
        stretch, frozen = planned
        with self.runner_lock:
            if episode != self.episode:
                return False  # an episode started while this waited
            try:
                chunk = runner.sample_continuing(images, state, frozen)
                for action in chunk:
                    check_action(action)
                    check_limits(action, self.robot)
            except ValueError as exc:  # e.g. a finite but absurd state (1e20) driving the network to NaN
                self.get_logger().error(f"not acting: {exc}", throttle_duration_sec=1.0)
                self.schedule_reset()
                return True
        if self.config.extra_delay:
            time.sleep(self.config.extra_delay)  # benchmarks: as if inference took this much longer
        now = self.get_clock().now().nanoseconds * 1e-9
        self.latencies.append(now - observation_time)
        index, chunk = schedule.record(observation_time, episode, chunk, stretch, now - observation_time)
        if stretch > 1:
            self.get_logger().warning(f"sampling takes {schedule.latency * 1e3:.0f} ms, more than half a chunk: the "
                                      f"robot moves at 1/{stretch} speed", throttle_duration_sec=5.0)
        msg = chunk_to_msg(chunk, observation_time + self.period, self.period, episode, stamp, index, len(frozen))
        self.tick_times.append(time.monotonic())
        self.ticks += 1
        if self.config.dry_run:
            self.get_logger().info(f"dry run, not sent: chunk {index} of episode {episode}", throttle_duration_sec=1.0)
            return True
        if self.paused or not self.activated:
            return True  # paused or deactivated while this chunk was sampled: the robot holds
        self.command_pubs[0].publish(msg)
        self.last_action = chunk[0]
        return True

    def ready_state(self, what: str) -> np.ndarray | None:
        """The robot state to act on, or None while the node cannot act (the reason is logged when it changes, and
        once it can again: "publishing <what>")."""
        problem = self.why_not_ready(time.monotonic())
        if problem != self.problem:  # log changes only (rclpy wants one severity per call site)
            if problem is None:
                self.get_logger().info(f"publishing {what}")
            else:
                self.get_logger().warning(f"not acting: {problem}")
            self.problem = problem
        if problem is not None:
            return None
        if self.robot.state_type == "RobotState":
            return self.state
        return assemble_state(self.robot, self.pose, self.joints)

    def why_not_ready(self, now: float) -> str | None:
        if self.policy is None:
            return self.problem if self.problem.startswith("no policy") else "no policy loaded"
        if not self.activated:
            return "configured, not active (lifecycle: activate)"
        if self.paused:
            return "paused (service ~/pause)"
        if self.runner is None:
            return "no instruction received yet"
        stale = self.config.stale_after
        for camera, image_time in zip(self.cameras, self.image_times):
            if now - image_time > stale:
                return f"{camera} camera image is stale (none newer than {stale} s)"
        if self.robot.state_type == "RobotState":
            inputs = [("robot state", self.state_time)]
        else:
            inputs = [(topic, when) for topic, when in ((self.robot.state_pose_topic, self.pose_time),
                                                        (self.robot.state_joint_topic, self.joints_time)) if topic]
        for what, when in inputs:
            if now - when > stale:
                return f"{what} is stale (none newer than {stale} s)"
        return None

    def publish_status(self) -> None:
        msg = PolicyStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.active = self.problem is None and not self.config.dry_run
        msg.reason = self.problem or ("dry run: computing actions, commanding nothing" if self.config.dry_run else "")
        msg.control_rate = float(self.config.control_rate)
        if len(self.tick_times) > 1:
            periods = np.diff(self.tick_times)
            msg.achieved_rate = float(1.0 / periods.mean())
            msg.tick_jitter_p99_ms = float(np.percentile(np.abs(periods - self.period), 99) * 1e3)
        if self.latencies:
            msg.sampling_latency_p50_ms = float(np.percentile(self.latencies, 50) * 1e3)
            msg.sampling_latency_p99_ms = float(np.percentile(self.latencies, 99) * 1e3)
        msg.ticks, msg.dropped_ticks = self.ticks, self.dropped_ticks
        msg.instruction = self.runner.instruction if self.runner else self.instruction
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
