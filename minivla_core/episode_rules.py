"""The simulator bridge's episode rules, without ROS: when the simulation steps, what it does with the
commands it gets, and when an episode ends. minivla_ros/sim_bridge.py is publish/subscribe glue around
this class; test/test_episode_rules.py checks every rule on a real MuJoCo env, no DDS involved. The env is
whichever simulated robot runs env.task (minivla_core/envs: Meta-World, or Fetch for fetch-push).

- With `motion_noise` > 0 each applied command's motion gets Gaussian noise of that standard deviation (clipped
  to the action range), drawn from a stream seeded by the layout: actuation noise, for recording demonstrations
  in which the expert corrects drift.
- Each command is applied at most once. When no new command has arrived since the last step, the
  arm holds still (zero motion, gripper as last commanded) instead of replaying the old one; after
  `command_timeout` seconds of that, a Holding event says so (once per pause).
- An episode's clock starts with its first command: until then every tick re-sends the initial
  observation without stepping, so no episode times out while no policy is running.
- Before the first episode has started, a tick with `subscribers_ready=False` does nothing at all
  (a recorder that is still connecting then gets the very first observation).
- An episode ends on success, on time-out (env.max_episode_steps), on request_reset() or on a task
  switch (request_task(), applied at the next tick); the next one starts at once, with the layout of
  (env.seed, episode) as in `minivla eval`. After `episodes` episodes (0: no limit) ticks do nothing.

tick() and the request methods return events, in order, for the caller to publish:
    NewObservation  the env's newest observation (published with one stamp for all its parts)
    EpisodeEnd      the episode that just ended, described by its last observation
    Holding         no command for a while: the arm holds still
    TaskSwitch      the env now runs another task
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from minivla_core.config import EnvConfig
from minivla_core.envs import make_env
from minivla_core.envs.base import Observation


@dataclass
class NewObservation:
    observation: Observation
    task: str
    episode: int
    step: int  # steps taken in this episode
    episode_return: float
    final: bool = False  # the episode ends with this observation (success or time-out)


@dataclass
class EpisodeEnd:
    task: str
    episode: int
    steps: int
    success: bool
    episode_return: float
    reason: str  # "success", "time-out", "reset requested", "task switch"


@dataclass
class Holding:
    idle_seconds: float


@dataclass
class TaskSwitch:
    old: str
    new: str


class EpisodeRules:
    def __init__(self, env_config: EnvConfig, command_timeout: float = 0.5, episodes: int = 0,
                 motion_noise: float = 0.0):
        self.env_config = env_config
        self.motion_noise = motion_noise
        self.command_timeout = command_timeout  # may change while running (ros2 param set)
        self.episodes = episodes  # may change while running; 0: no limit
        self.env = make_env(env_config)
        self.episodes_done = 0
        self.pending_task: str | None = None
        self.newest_command: np.ndarray | None = None
        self.last_command_time = 0.0
        self.holding_reported = False
        self.start_episode(0)

    # --- what the outside world asks ----------------------------------------------------------
    def command(self, action: np.ndarray, now: float) -> None:
        """A checked action (minivla_core/actions.py); only the newest before a tick is applied."""
        self.newest_command = action
        self.last_command_time = now

    def request_task(self, task: str) -> None:
        """Switch to `task` (already checked) at the next tick."""
        self.pending_task = task

    def request_reset(self) -> list:
        """End the current episode now and start the next."""
        return self.finish_episode(success=False, reason="reset requested")

    @property
    def finished(self) -> bool:
        return bool(self.episodes) and self.episodes_done >= self.episodes

    # --- one step of the simulation -----------------------------------------------------------
    def tick(self, now: float, subscribers_ready: bool = True) -> list:
        if self.finished:
            return []
        if self.pending_task is not None:
            task, self.pending_task = self.pending_task, None
            if task != self.env.task:
                return self.switch_task(task)
        command, self.newest_command = self.newest_command, None
        if self.episodes_done == 0 and not self.started and not subscribers_ready:
            return []
        events = []
        if command is None:
            if not self.started:  # waiting for this episode's first command
                return [self.new_observation()]
            idle = now - self.last_command_time
            if idle > self.command_timeout and not self.holding_reported:
                events.append(Holding(idle))
                self.holding_reported = True
            command = np.array([0.0, 0.0, 0.0, self.gripper], dtype=np.float32)
        else:
            self.started, self.holding_reported = True, False
            self.gripper = float(command[3])
            if self.motion_noise:
                command = command.copy()
                command[:3] = np.clip(command[:3] + self.noise.normal(0.0, self.motion_noise, 3), -1.0, 1.0)
        self.observation = self.env.step(command)
        self.episode_return += self.observation.reward
        events.append(self.new_observation())
        if self.observation.success or self.env.done:
            events[-1].final = True
            events += self.finish_episode(self.observation.success,
                                          "success" if self.observation.success else "time-out")
        return events

    # --- episodes -------------------------------------------------------------------------------
    def start_episode(self, episode: int) -> None:
        self.observation = self.env.reset(episode)
        self.noise = np.random.default_rng([self.env_config.seed, episode, 1])  # motion noise: by layout
        self.episode_return = 0.0
        self.started = False
        self.newest_command = None
        self.gripper = -1.0

    def new_observation(self) -> NewObservation:
        """The event for the current observation, described as it is now (the env moves on before the
        caller publishes)."""
        return NewObservation(self.observation, self.env.task, self.env.episode, self.env.step_count,
                              float(self.episode_return))

    def end_of_episode(self, success: bool, reason: str) -> EpisodeEnd:
        return EpisodeEnd(self.env.task, self.env.episode, self.env.step_count, bool(success),
                          float(self.episode_return), reason)

    def finish_episode(self, success: bool, reason: str) -> list:
        end = self.end_of_episode(success, reason)
        self.episodes_done += 1
        self.start_episode(self.env.episode + 1)
        if self.finished:  # after the last episode the bridge goes quiet
            return [end]
        return [end, self.new_observation()]

    def switch_task(self, task: str) -> list:
        """End the current episode, rebuild the env for `task`, start its next episode."""
        end = self.end_of_episode(False, "task switch")
        old, episode = self.env.task, self.env.episode + 1
        self.env.close()
        self.env_config = dataclasses.replace(self.env_config, task=task)
        self.env = make_env(self.env_config)
        self.episodes_done += 1
        self.start_episode(episode)
        return [end, TaskSwitch(old, task), self.new_observation()]

    def close(self) -> None:
        self.env.close()
