"""The robot side of each timing mode (minivla_core/timing.py), without ROS: when the simulator bridge steps and
which command it applies. The bridge node converts messages and publishes the events; the rules of an episode
(hold still without a command, when an episode ends) are EpisodeRules' (minivla_core/episode_rules.py).

    FreeStepping      steps on its clock (`tick`), applying the newest command.
    LockstepStepping  steps when a command answers the newest observation (a command names the observation it
                      answers by its stamp); after `command_timeout` seconds without an answer, a tick takes a step
                      holding still (or re-sends an episode's first observation), so that a lost answer does not
                      stop the simulation.
    TimedStepping     steps on its clock, applying the action due then from the timed chunks it was sent
                      (minivla_core/timed.py: ActionBuffer); a chunk planned for another period, or too long, is
                      refused before any per-action work.

Each one: command(action, answers, now) and chunk(...) take what the policy sent; tick(now, ros_now, ready) is the
bridge's timer; published(...) tells it which observation went out under which stamp. Every method returns the
EpisodeRules events to publish, in order. `now` is a monotonic clock, `ros_now` the ROS time (seconds) that
observations are stamped with and chunks' due times count in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivla_core.episode_rules import EpisodeRules
from minivla_core.sync import Stamp
from minivla_core.timed import ActionBuffer, check_chunk
from minivla_core.timing import same_period


@dataclass
class Unanswered:
    """Lockstep: a command answered no current observation and was not applied (late, or from a policy that is not
    in lockstep)."""

    count: int  # so far


@dataclass
class ChunkRefused:
    """Timed: a chunk of an episode other than the robot's, or older than the newest it has."""

    episode: int
    chunk: int
    robot_episode: int


class FreeStepping:
    mode = "free"

    def __init__(self, rules: EpisodeRules, step_rate: float):
        self.rules, self.step_rate = rules, step_rate

    def command(self, action: np.ndarray, answers: Stamp, now: float) -> list:
        """A checked action; the newest before a tick is applied."""
        self.rules.command(action, now)
        return []

    def chunk(self, episode: int, first_due: float, period: float, actions: np.ndarray, number: int,
              ros_now: float) -> list:
        raise ValueError("this robot takes single commands, not timed chunks (bridge.timing timed takes chunks)")

    def tick(self, now: float, ros_now: float, subscribers_ready: bool = True) -> list:
        return self.rules.tick(now, subscribers_ready)

    def published(self, episode: int, step: int, stamp: Stamp, now: float) -> None:
        """An observation went out."""

    def observation_time(self, ros_now: float) -> float:
        """The time an observation published now is stamped with."""
        return ros_now


class LockstepStepping(FreeStepping):
    mode = "lockstep"

    def __init__(self, rules: EpisodeRules, step_rate: float):
        super().__init__(rules, step_rate)
        self.observation_key: tuple[int, int] | None = None  # (episode, step) of the newest observation
        self.answerable: set[Stamp] = set()  # the stamps it went out under (an episode's first is re-sent)
        self.answered_before: set[Stamp] = set()  # the previous observation's (late answers to it are no surprise)
        self.published_at = 0.0
        self.unanswerable = 0

    def command(self, action: np.ndarray, answers: Stamp, now: float) -> list:
        """Applied at once, if it answers the newest observation: the simulation steps."""
        if answers not in self.answerable:
            if answers in self.answered_before:
                return []  # e.g. a policy's answer to an episode's final observation, which it cannot know is final
            self.unanswerable += 1
            return [Unanswered(self.unanswerable)]
        self.rules.command(action, now)
        return self.rules.tick(now)

    def tick(self, now: float, ros_now: float, subscribers_ready: bool = True) -> list:
        if now - self.published_at < self.rules.command_timeout:  # (it may change while running)
            return []  # the answer to the newest observation steps the simulation; none came yet
        return self.rules.tick(now, subscribers_ready)

    def published(self, episode: int, step: int, stamp: Stamp, now: float) -> None:
        if (episode, step) != self.observation_key:  # not a re-send of the same observation
            self.observation_key, self.answered_before, self.answerable = (episode, step), self.answerable, set()
        self.answerable.add(stamp)
        self.published_at = now


class TimedStepping(FreeStepping):
    mode = "timed"

    def __init__(self, rules: EpisodeRules, step_rate: float):
        super().__init__(rules, step_rate)
        self.buffer = ActionBuffer(period=1.0 / step_rate)
        self.tick_time: float | None = None  # when the newest step was taken (ROS time)

    def command(self, action: np.ndarray, answers: Stamp, now: float) -> list:
        raise ValueError("this robot executes timed chunks (action_chunk), not single commands")

    def chunk(self, episode: int, first_due: float, period: float, actions: np.ndarray, number: int,
              ros_now: float) -> list:
        """A chunk whose actions[0] is due at `first_due`, into the buffer; ValueError for one the robot cannot
        execute. An episode's first chunk starts at the next step: the arm waits still until it comes."""
        check_chunk(len(actions), period)
        if not same_period(period, self.step_rate):
            raise ValueError(f"chunk planned for {1 / period:g} actions/s, but this robot steps {self.step_rate:g} "
                             f"times a second (policy_node.control_rate must equal bridge.step_rate)")
        next_step = None
        if not self.rules.started and self.tick_time is not None:
            next_step = self.tick_time + 1.0 / self.step_rate
        robot_episode = self.rules.env.episode
        if not self.buffer.add(episode, first_due, period, actions, number, robot_episode, ros_now, next_step):
            return [ChunkRefused(episode, number, robot_episode)]
        return []

    def tick(self, now: float, ros_now: float, subscribers_ready: bool = True) -> list:
        self.tick_time = ros_now
        action = self.buffer.take(ros_now, self.rules.env.episode)
        if action is not None:
            self.rules.command(action, now)
        elif self.rules.started:
            self.buffer.hold()
        return self.rules.tick(now, subscribers_ready)

    def observation_time(self, ros_now: float) -> float:
        """The time of its step: the due times of chunks count from it."""
        return self.tick_time if self.tick_time is not None else ros_now


def make_stepping(timing: str, rules: EpisodeRules, step_rate: float) -> FreeStepping:
    if timing == "lockstep":
        return LockstepStepping(rules, step_rate)
    if timing == "timed":
        return TimedStepping(rules, step_rate)
    return FreeStepping(rules, step_rate)
