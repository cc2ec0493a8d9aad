"""The policy side of each timing mode (minivla_core/timing.py), without ROS: what the policy node does with an
observation, a control tick, a hold and a lifecycle transition. The node subscribes, converts messages and
publishes what a driver hands to its `publish` callback; every rule lives here, unit-tested without DDS
(test/test_drivers.py).

One small interface for the three modes:
    observe(observation)   a complete observation (lockstep: answered at once; timed: offered to the sampler)
    tick(observation)      free timing: one command from the newest observation
    new_episode(episode)   an episode starts: the rest of the current chunk was planned for the scene before it,
                           and the sampler's noise restarts at the episode's seed (as in `minivla eval`)
    hold()                 stop the robot where it is (what a robot needs to stop depends on the mode)
    activate() / deactivate() / close()

What drivers publish (`publish(output)`):
    Command   one action (free and lockstep): the node sends it as the robot interface's command
    Chunk     a whole chunk with due times (timed), or a chunk of standing still (timed hold)
    Stop      free and lockstep hold: zero motion, gripper as it is (all zeros for a robot with no gripper; sent
              to robots that keep moving on their last command: velocity interfaces)
Every mode also hands each chunk it samples (and acts on) to `planned(observation, actions)`, when given: the
one place a viewer of the plan (the node's policy_node/planned_path) hooks in; None costs nothing.

Thread safety. Free and lockstep drivers act on the thread that calls them. The timed driver samples on a thread
of its own; its schedule (minivla_core/timed.py: ChunkSchedule) is touched by that thread only, the runner only
under `runner_lock`, and everything it publishes goes out under `publish_lock`, which hold() and deactivate() take
too. Each hold starts a new epoch: a chunk sampled in an older epoch is dropped instead of published, so the chunk
of standing still is the last thing published after a deactivate, whatever the sampler was doing. Chunk numbers
only grow within an episode (the stop chunk takes one too), so a robot side may also refuse any chunk older than
the newest it has (minivla_core/timed.py: ActionBuffer does).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from minivla_core.actions import check_action
from minivla_core.sync import Stamp, SyncedObservation
from minivla_core.timed import ChunkSchedule


@dataclass
class Command:
    action: np.ndarray
    observation_stamp: Stamp | None  # the observation it answers (lockstep) or its chunk was sampled from (free)
    chunk: int  # chunks sampled since the runner's reset, counted from 0
    step_in_chunk: int


@dataclass
class Chunk:
    actions: np.ndarray  # (n, A)
    first_due: float  # seconds (ROS time): when actions[0] is due; action i at first_due + i * period
    period: float
    episode: int
    observation_stamp: Stamp
    number: int  # grows within an episode
    frozen: int  # first actions kept from the chunk before (inpainting)


@dataclass
class Stop:
    action: np.ndarray  # zero motion, the gripper (if any) as last commanded


class ControlStats:
    """Ticks (commands or chunks sent), their timing and sampling latencies, for the node's status."""

    def __init__(self, period: float):
        self.period = period
        self.tick_times: deque[float] = deque(maxlen=max(10, int(10 / period)))
        self.latencies: deque[float] = deque(maxlen=200)
        self.ticks = self.dropped_ticks = 0

    def tick(self, now: float, count_dropped: bool = False) -> None:
        if count_dropped and self.tick_times and now - self.tick_times[-1] > 1.5 * self.period:
            self.dropped_ticks += int(round((now - self.tick_times[-1]) / self.period)) - 1
        self.tick_times.append(now)
        self.ticks += 1

    def summary(self) -> dict:
        result = {"ticks": self.ticks, "dropped_ticks": self.dropped_ticks, "achieved_rate": 0.0,
                  "tick_jitter_p99_ms": 0.0, "sampling_latency_p50_ms": 0.0, "sampling_latency_p99_ms": 0.0}
        if len(self.tick_times) > 1:
            periods = np.diff(self.tick_times)
            result["achieved_rate"] = float(1.0 / periods.mean())
            result["tick_jitter_p99_ms"] = float(np.percentile(np.abs(periods - self.period), 99) * 1e3)
        if self.latencies:
            result["sampling_latency_p50_ms"] = float(np.percentile(self.latencies, 50) * 1e3)
            result["sampling_latency_p99_ms"] = float(np.percentile(self.latencies, 99) * 1e3)
        return result


def stop_action(action_dim: int, last_action: np.ndarray | None, gripper: bool = True) -> np.ndarray:
    """Standing still: zero motion, and with a `gripper` (the action's last number) the gripper as last commanded
    (open before any command); without one, every number is motion: all zeros."""
    stop = np.zeros(action_dim, dtype=np.float32)
    if gripper:
        stop[-1] = last_action[-1] if last_action is not None else -1.0
    return stop


def why_not_ready(no_policy: str | None, active: bool, paused: bool, has_instruction: bool,
                  stale: str | None) -> str | None:
    """Why the policy side cannot act now, in the order a user fixes it; None when it can. `no_policy`: why there is
    no policy (None: there is one); `stale`: the stale input, described (minivla_core/sync.py)."""
    if no_policy is not None:
        return no_policy
    if not active:
        return "configured, not active (lifecycle: activate)"
    if paused:
        return "paused (service ~/pause)"
    if not has_instruction:
        return "no instruction received yet"
    return stale


class PolicyDriver:
    """What the three modes share: the runner (the sampler and its instruction, set by the node), activity, the
    episode number, a hold, the checks every action passes before it is published."""

    mode = ""

    def __init__(self, period: float, action_dim: int, publish: Callable, log: Callable[[str, str], None],
                 check_limits: Callable[[np.ndarray], None] = lambda action: None, gripper: bool = True,
                 planned: Callable[[SyncedObservation, np.ndarray], None] | None = None):
        """`publish(output)` sends a Command, Chunk or Stop; `log(level, text)` with level "error" or "warning";
        `check_limits(action)` raises ValueError for an action the robot must never get (robot.action_limits);
        `gripper`: the action's last number is a gripper's, which a hold keeps (false: a robot with none, whose
        hold is all zeros); `planned(observation, actions)`: each new chunk and the observation it was sampled from
        (after its first action is published)."""
        self.period, self.action_dim, self.gripper = period, action_dim, gripper
        self.publish, self.log, self.check_limits, self.planned = publish, log, check_limits, planned
        self.runner = None  # a PolicyRunner once an instruction came
        self.runner_lock = threading.Lock()  # the runner is used from the node's callbacks and the sampling thread
        self.active = False
        self.episode: int | None = None
        self.last_action: np.ndarray | None = None
        self.stats = ControlStats(period)
        self.chunk_stamp: Stamp | None = None  # the observation the current chunk was sampled from (free, lockstep)

    # --- what the node sets -------------------------------------------------------------------------------
    def set_runner(self, runner) -> None:
        with self.runner_lock:
            self.runner = runner
            runner.reset(self.episode)
        self.restart()

    def update_runner(self, change: Callable) -> None:
        """Change the runner (instruction, sampler settings) under its lock; the next chunk starts afresh."""
        with self.runner_lock:
            if self.runner is None:
                return
            change(self.runner)
            self.runner.reset()
        self.restart()

    def restart(self) -> None:
        """The next chunk is sampled afresh (the timed schedule too)."""

    def new_episode(self, episode: int) -> bool:
        """True if `episode` is a new one: the current chunk is dropped, the noise restarts at its seed."""
        if episode == self.episode:
            return False
        with self.runner_lock:
            self.episode = episode
            if self.runner is not None:
                self.runner.reset(episode)
        self.restart()
        return True

    # --- lifecycle ----------------------------------------------------------------------------------------
    def activate(self) -> None:
        self.active = True

    def deactivate(self) -> None:
        self.hold()
        self.active = False

    def close(self) -> None:
        self.active = False

    def hold(self) -> None:
        """Stop the robot where it is: a Stop (zero motion, gripper kept); the next action comes from a new chunk."""
        with self.runner_lock:
            if self.runner is not None:
                self.runner.reset()
        self.publish(Stop(stop_action(self.action_dim, self.last_action, self.gripper)))

    # --- the three modes ------------------------------------------------------------------------------------
    def observe(self, observation: SyncedObservation) -> None:
        """A complete observation (exact stamps)."""

    def tick(self, observation: SyncedObservation) -> None:
        """Free timing: a control tick, with the newest observation."""

    def act(self, observation: SyncedObservation, answers: Stamp | None) -> None:
        """Free and lockstep: the next action from the runner's chunk (a new chunk when it is used up), checked, and
        published; an action that fails a check is never published: the driver logs it and holds."""
        with self.runner_lock:
            runner = self.runner
            try:
                action = check_action(runner.act(observation.images, observation.state), self.action_dim)
                self.check_limits(action)
            except ValueError as exc:  # e.g. a finite but absurd state (1e20) driving the network to NaN
                error = exc
            else:
                error, new_chunk = None, None
                if runner.step_in_chunk == 0:  # a new chunk was sampled from this observation
                    self.stats.latencies.append(runner.last_sample_seconds)
                    self.chunk_stamp = observation.stamp
                    new_chunk = runner.last_chunk
                command = Command(action, answers or self.chunk_stamp, max(runner.chunk_index, 0),
                                  runner.step_in_chunk)
        if error is not None:
            self.log("error", f"not acting: {error}")
            self.hold()  # the rest of a bad chunk is bad too
            return
        self.publish(command)
        self.last_action = action
        if new_chunk is not None:
            self.show_plan(observation, new_chunk)

    def show_plan(self, observation: SyncedObservation, actions: np.ndarray) -> None:
        """Hand a new chunk to `planned`, if given; a failure there is logged and never stops commanding."""
        if self.planned is None:
            return
        try:
            self.planned(observation, actions)
        except Exception as exc:  # noqa: BLE001 - a viewer's problem must not stop the robot's commands
            self.log("warning", f"showing the planned chunk failed: {exc}")


class FreeDriver(PolicyDriver):
    """One command per control tick, from the newest inputs; stamped with the tick's time, and naming the
    observation its chunk was sampled from."""

    mode = "free"

    def tick(self, observation: SyncedObservation) -> None:
        self.stats.tick(time.monotonic(), count_dropped=True)
        self.act(observation, None)


class LockstepDriver(PolicyDriver):
    """One command per observation, naming the observation it answers (the bridge steps when it comes)."""

    mode = "lockstep"

    def observe(self, observation: SyncedObservation) -> None:
        self.stats.tick(time.monotonic())
        self.act(observation, observation.stamp)


class TimedDriver(PolicyDriver):
    """Whole chunks with due times, sampled ahead on a thread of its own so that the next chunk is ready when the
    robot has executed n_action_steps actions of the current one (minivla_core/timed.py: ChunkSchedule). An
    observation that comes while a chunk is sampled is not used: the next one, at most a step away, is fresher by
    almost a step (sampling from the stale one would add its age to the latency: timed.py, run_timed_episode)."""

    mode = "timed"

    def __init__(self, period: float, action_dim: int, publish: Callable, log: Callable[[str, str], None],
                 horizon: int, inpaint: bool, clock: Callable[[], float],
                 check_limits: Callable[[np.ndarray], None] = lambda action: None, gripper: bool = True,
                 planned: Callable[[SyncedObservation, np.ndarray], None] | None = None):
        """`clock()`: the time the robot's due times count in (ROS time, seconds)."""
        super().__init__(period, action_dim, publish, log, check_limits, gripper, planned)
        self.horizon, self.inpaint, self.clock = horizon, inpaint, clock
        self.publish_lock = threading.Lock()  # active, epoch, chunk numbers, and every publication
        self.epoch = 0  # one more at each hold: a chunk sampled before it is never published
        self.numbers: dict[int, int] = {}  # episode -> the next chunk number
        self.schedule: ChunkSchedule | None = None  # the sampling thread's alone
        self.schedule_restart = True  # asks the sampling thread to start its schedule afresh
        self.observation_ready = threading.Condition()
        self.newest: SyncedObservation | None = None
        self.running = True
        self.thread = threading.Thread(target=self.sampling_loop, name="sampler", daemon=True)
        self.thread.start()

    # --- what other threads call ------------------------------------------------------------------------------
    def observe(self, observation: SyncedObservation) -> None:
        with self.observation_ready:
            self.newest = observation
            self.observation_ready.notify()

    def restart(self) -> None:
        with self.publish_lock:
            self.schedule_restart = True

    def activate(self) -> None:
        with self.publish_lock:
            self.active = True

    def deactivate(self) -> None:
        with self.publish_lock:
            self.hold_locked()
            self.active = False

    def hold(self) -> None:
        """(The runner keeps no queue in timed timing: the next chunk starts afresh with the schedule; nothing here
        waits for the sampling thread.)"""
        with self.publish_lock:
            self.hold_locked()

    def close(self) -> None:
        with self.publish_lock:
            self.active = False
            self.epoch += 1
        with self.observation_ready:
            self.running = False
            self.observation_ready.notify()
        self.thread.join(timeout=5.0)

    def hold_locked(self) -> None:
        """Under publish_lock: a new epoch, and standing still from the next step on (gripper as it is), for the
        robot's current episode, if the driver has commanded it."""
        self.epoch += 1
        self.schedule_restart = True
        if self.active and self.episode is not None and self.runner is not None:
            stop = np.tile(stop_action(self.action_dim, self.last_action, self.gripper), (self.horizon, 1))
            first_due = self.clock() + self.period
            self.publish(Chunk(stop, first_due, self.period, self.episode, (0, 0), self.next_number(self.episode), 0))

    def next_number(self, episode: int) -> int:
        number = self.numbers.get(episode, 0)
        self.numbers = {episode: number + 1}  # earlier episodes are over
        return number

    # --- the sampling thread --------------------------------------------------------------------------------
    def sampling_loop(self) -> None:
        while True:
            with self.observation_ready:
                while self.running and self.newest is None:
                    self.observation_ready.wait(timeout=0.5)
                if not self.running:
                    return
                observation, self.newest = self.newest, None
            try:
                sampled = self.sample(observation)
            except Exception as exc:  # never let the thread die silently: the robot would hold forever
                self.log("error", f"sampling failed: {type(exc).__name__}: {exc}")
                continue
            if sampled:
                with self.observation_ready:
                    self.newest = None  # came while sampling: wait for the next

    def sample(self, observation: SyncedObservation) -> bool:
        """Sample, check and publish a chunk from this observation if one is due; True if it sampled one."""
        with self.publish_lock:
            if not self.active:
                return False
            epoch = self.epoch
            if self.schedule_restart or self.schedule is None:
                self.schedule, self.schedule_restart = None, False
        with self.runner_lock:
            runner = self.runner
            if runner is None or observation.episode != self.episode:
                return False  # no instruction yet, or an episode started while this waited
            if self.schedule is None or self.schedule.n_action_steps != runner.n_action_steps:
                self.schedule = ChunkSchedule(self.period, self.horizon, runner.n_action_steps)
            observation_time = observation.stamp[0] + observation.stamp[1] * 1e-9
            planned = self.schedule.plan(observation_time, observation.episode, observation.step, self.inpaint)
            if planned is None:
                return False  # not due yet
            stretch, frozen = planned
            try:
                chunk = runner.sample_continuing(observation.images, observation.state, frozen)
                for action in chunk:
                    check_action(action, self.action_dim)
                    self.check_limits(action)
                error = None
            except ValueError as exc:  # e.g. a finite but absurd state (1e20) driving the network to NaN
                error = exc
        if error is not None:  # (publish_lock is never taken while runner_lock is held: no lock order to get wrong)
            self.log("error", f"not acting: {error}")
            self.schedule = None
            return True
        now = self.clock()
        self.stats.latencies.append(now - observation_time)
        _, chunk = self.schedule.record(observation_time, observation.episode, chunk, stretch, now - observation_time)
        if stretch > 1:
            self.log("warning", f"sampling takes {self.schedule.latency * 1e3:.0f} ms, more than half a chunk: the "
                                f"robot moves at 1/{stretch} speed")
        with self.publish_lock:
            if epoch != self.epoch or not self.active:
                return True  # held or deactivated while it was sampled: the robot stands still
            self.stats.tick(time.monotonic())
            self.publish(Chunk(chunk, observation_time + self.period, self.period, observation.episode,
                               observation.stamp, self.next_number(observation.episode), len(frozen)))
            self.last_action = chunk[0]
            self.show_plan(observation, chunk)
        return True


DRIVERS = {"free": FreeDriver, "lockstep": LockstepDriver, "timed": TimedDriver}
