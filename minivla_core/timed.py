"""Timed execution of action chunks, without ROS: how a robot with its own clock executes a policy whose
inference may be slower than one control step (the simulator bridge and the policy node with timing "timed").

The policy samples a chunk of `horizon` actions from the observation of time t; action i of that chunk is due
at t + (i + 1) * period, one control step after another. Two halves, one on each side:

- On the robot's side, ActionBuffer keeps every action it was sent, indexed by due time. At each control step it
  applies the action due then and drops the ones whose time has passed; a newer chunk replaces the older one
  from its first action on. It applies no action of an episode other than the robot's current one, and an
  episode's first chunk starts at the next step (the arm waits still for it, as it does for `minivla eval`).
- On the policy's side, ChunkSchedule decides when to sample (LeRobot's asynchronous inference): not when the
  buffer runs dry, but early enough that the new chunk arrives as the old one's first `n_action_steps`
  actions are used up, so a chunk is executed as far as `minivla eval` executes it however long sampling
  takes. The actions due while it samples are executed from the old chunk; the new chunk keeps them as its
  first `frozen` actions (real-time chunking: the sampler inpaints the rest around them, see
  minivla_core/model/diffusion.py), so the seam between chunks does not jump.
- When sampling takes longer than half a chunk (8 actions of 50 ms: 200 ms), no schedule can keep a robot moving
  at full speed: a chunk is used up before the next can come. ChunkSchedule then slows the robot down instead of
  letting it stop and go: each action is spread over `stretch` steps of 1/stretch of its motion (the same path at a
  fraction of the speed; the gripper command is kept), so a chunk lasts as long as sampling needs.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from minivla_core.errors import NonFiniteActions
from minivla_core.view import PolicyView


# A chunk is at most this many actions (a policy's horizon times the largest stretch is 64 here): a longer one is
# refused before any per-action work (a valid chunk of 10^5 actions once froze the bridge for 10 s).
MAX_CHUNK_ACTIONS = 1024
PERIOD_RANGE = (1e-3, 10.0)  # seconds per action a chunk may be planned with


def check_chunk(n_actions: int, period: float) -> None:
    """ValueError unless a chunk of `n_actions` actions, `period` seconds apart, is of a size and period a robot
    can execute: checked before its actions are read."""
    if not 1 <= n_actions <= MAX_CHUNK_ACTIONS:
        raise ValueError(f"chunk of {n_actions} actions; a chunk has 1..{MAX_CHUNK_ACTIONS}")
    if not (math.isfinite(period) and PERIOD_RANGE[0] <= period <= PERIOD_RANGE[1]):
        raise ValueError(f"chunk period {period} s is not within {PERIOD_RANGE[0]:g}..{PERIOD_RANGE[1]:g} s")


@dataclass
class ExecutorCounts:
    """What the robot side did, counted since it started."""

    applied: int = 0  # actions applied at their control step
    expired: int = 0  # actions skipped: their step passed while they were in the buffer, not applied
    late: int = 0  # actions that arrived after their step (the chunk before supplied it: sampling latency)
    superseded: int = 0  # actions replaced by a newer chunk, or left at an episode's end, before their time
    held: int = 0  # control steps of a started episode with no action due: the arm held still
    refused_chunks: int = 0  # chunks of an episode other than the current one, or older than the newest (never applied)
    seams: int = 0  # control steps whose action came from a newer chunk than the step before
    max_seam_jump: float = 0.0  # largest change of a motion action from one step to the next, at a seam
    max_step_jump: float = 0.0  # the same inside a chunk (what the policy itself does from step to step)


@dataclass
class ActionBuffer:
    """The robot side's time-indexed buffer. Times are seconds on the clock both sides share (ROS time)."""

    period: float  # the robot's control period
    episode: int | None = None  # the episode whose actions the buffer holds
    entries: deque = field(default_factory=deque)  # (due time, chunk number, action), by due time
    counts: ExecutorCounts = field(default_factory=ExecutorCounts)
    last_action: np.ndarray | None = None
    last_chunk: int | None = None
    newest_chunk: int | None = None  # the number of the newest chunk taken in this episode

    def add(self, episode: int, first_due: float, period: float, actions: np.ndarray, chunk: int,
            current_episode: int, now: float, next_step: float | None = None) -> bool:
        """A chunk for `episode` whose actions[0] is due at `first_due`, arriving at `now`. `current_episode` is the
        robot's; with `next_step` (the episode has not started: the arm waits for its first action) actions[0] is
        due then. Returns False (and counts it) for a chunk of another episode, or one numbered no higher than the
        newest taken in this episode (chunk numbers grow within an episode: a chunk sampled before a stop chunk can
        never replace it)."""
        if episode != current_episode:
            self.counts.refused_chunks += 1
            return False
        if episode != self.episode:
            self.clear(episode)
        if self.newest_chunk is not None and chunk <= self.newest_chunk:
            self.counts.refused_chunks += 1
            return False
        self.newest_chunk = chunk
        if next_step is not None:
            first_due = next_step
        dues = first_due + period * np.arange(len(actions))
        late = int(np.sum(dues < now))  # their steps came before the chunk: the old chunk's actions ran then
        self.counts.late += late
        if late == len(actions):
            return True
        dues, actions = dues[late:], actions[late:]
        kept = [entry for entry in self.entries if entry[0] < dues[0] - self.period / 2]
        self.counts.superseded += len(self.entries) - len(kept)
        self.entries = deque(kept + [(float(due), chunk, np.asarray(action, dtype=np.float32))
                                     for due, action in zip(dues, actions)])
        return True

    def take(self, now: float, current_episode: int) -> np.ndarray | None:
        """The action due at the control step of time `now`, or None (nothing due: hold still). Actions due more
        than half a period before `now` have expired and are dropped."""
        if current_episode != self.episode:
            self.clear(current_episode)  # nothing of another episode is ever applied
            return None
        while self.entries and self.entries[0][0] < now - self.period / 2:
            self.entries.popleft()
            self.counts.expired += 1
        if not self.entries or self.entries[0][0] >= now + self.period / 2:
            return None
        _, chunk, action = self.entries.popleft()
        self.count_applied(action, chunk)
        return action

    def count_applied(self, action: np.ndarray, chunk: int) -> None:
        self.counts.applied += 1
        if self.last_action is not None:
            jump = float(np.abs(action[:-1] - self.last_action[:-1]).max())  # the motion; the gripper is binary
            if chunk != self.last_chunk:
                self.counts.seams += 1
                self.counts.max_seam_jump = max(self.counts.max_seam_jump, jump)
            else:
                self.counts.max_step_jump = max(self.counts.max_step_jump, jump)
        self.last_action, self.last_chunk = action, chunk

    def hold(self) -> None:
        """A step of a started episode with nothing due."""
        self.counts.held += 1

    def clear(self, episode: int) -> None:
        self.counts.superseded += len(self.entries)
        self.entries, self.episode = deque(), episode
        self.last_action = self.last_chunk = self.newest_chunk = None


def stretch_chunk(chunk: np.ndarray, stretch: int) -> np.ndarray:
    """Each action of `chunk` as `stretch` steps of 1/stretch of its motion (the last number, the gripper, kept)."""
    if stretch == 1:
        return chunk
    slow = np.repeat(chunk, stretch, axis=0)
    slow[:, :-1] /= stretch
    return slow


class ChunkSchedule:
    """The policy side: when to sample the next chunk, and how many of its first actions are frozen.

    Chunk c was sampled from the observation of time t_c; its action i is due at t_c + (i + 1) * period. The next
    chunk should take over after `n_action_steps` of them, at t_c + (n + 1) * period, so sampling starts at the
    first observation of time >= t_c + (n + 1) * period - latency - period (its chunk's action 0 is due one
    period after it). The latency is estimated from the sampling times measured so far (their 90th percentile,
    and the newest when it is larger) plus `margin` for the message's trip."""

    def __init__(self, period: float, horizon: int, n_action_steps: int, margin: float = 0.005):
        self.period, self.horizon, self.n_action_steps, self.margin = period, horizon, n_action_steps, margin
        self.latencies: deque[float] = deque(maxlen=50)
        self.episode: int | None = None
        self.chunk_time: float | None = None  # observation time of the newest chunk sent in this episode
        self.chunk: np.ndarray | None = None  # that chunk, as sampled (before stretching)
        self.chunk_stretch = 1  # and the stretch it was sent with
        self.chunks = 0  # chunks sent in this episode
        self.aligned = False  # the episode's first chunk is placed where the robot started it (robot_started)

    @property
    def latency(self) -> float:
        if not self.latencies:
            return self.margin
        return max(float(np.percentile(self.latencies, 90)), self.latencies[-1]) + self.margin

    def measured(self, seconds: float) -> None:
        """One sampling call took `seconds`, from its observation's time to the chunk's publication."""
        self.latencies.append(seconds)

    def stretch(self) -> int:
        """Steps per action for the next chunk: 1, unless sampling is so slow that a chunk would run out before the
        next could come. A chunk sent at latency L lasts horizon * stretch steps, L of them gone by the time it
        arrives; the rest must cover the next chunk's latency and one step:
        horizon * stretch * period >= 2 L + period."""
        typical = float(np.percentile(self.latencies, 90)) + self.margin if self.latencies else self.margin
        needed = (2 * typical + self.period) / (self.horizon * self.period)  # one slow call does not slow the robot
        return int(min(max(1, math.ceil(needed - 1e-9)), 4))

    def due(self, observation_time: float, episode: int, step: int) -> bool:
        """Sample now, from the observation of `observation_time`, the `step`-th of `episode`?"""
        if episode != self.episode or self.chunk_time is None:
            return True  # an episode's first chunk
        if step == 0:  # the robot waits for the first chunk, re-sending its first observation; sample again only
            return observation_time - self.chunk_time > 1.0  # if that chunk seems lost
        steps = self.n_action_steps * self.chunk_stretch  # the robot steps the newest chunk should run
        start = self.chunk_time + (steps + 1) * self.period - self.latency - self.period
        return observation_time >= start - 1e-4

    def frozen_prefix(self, observation_time: float, episode: int, stretch: int = 1) -> np.ndarray:
        """The actions of the newest chunk that fall due while the next one is sampled from the observation of
        `observation_time`: (d, A). Action i of the new chunk is due (i + 1) periods after its observation, so the
        first d = floor(latency / period) are due before it arrives: the robot executes the old chunk's actions for
        those steps, and the new chunk keeps them (inpainted), so the seam between the two does not jump. Empty for
        an episode's first chunk, and when sampling takes less than a period."""
        if episode != self.episode or self.chunk is None or stretch != self.chunk_stretch:
            return np.zeros((0, len(self.chunk[0]) if self.chunk is not None else 0), dtype=np.float32)
        span = self.period * stretch  # robot time per sampled action
        steps = min(math.floor(self.latency / span), self.horizon - 1)
        offset = max(round((observation_time - self.chunk_time) / span), 0)  # new action 0 = old action `offset`
        return self.chunk[offset: offset + steps]

    def plan(self, observation_time: float, episode: int, step: int, inpaint: bool) -> tuple[int, np.ndarray] | None:
        """What the sampling side does with the observation of `observation_time` (the `step`-th of `episode`): None
        when no chunk is due yet; else (stretch, frozen): the steps per action of the chunk to sample now and the
        actions it must keep (empty unless `inpaint`: policy_node.seam)."""
        if episode == self.episode and self.chunks == 1 and step >= 1 and not self.aligned:
            self.robot_started(observation_time)  # the robot applied the first chunk's action 0 at this step
        if not self.due(observation_time, episode, step):
            return None
        stretch = self.stretch()
        frozen = self.frozen_prefix(observation_time, episode, stretch)
        return stretch, frozen if inpaint else frozen[:0]

    def record(self, observation_time: float, episode: int, chunk: np.ndarray, stretch: int,
               latency: float) -> tuple[int, np.ndarray]:
        """The chunk planned for that observation was sampled (as it is sent, `latency` seconds after the
        observation): returns its number in the episode and its actions as the robot gets them (stretched)."""
        self.measured(latency)
        return self.sent(observation_time, episode, chunk, stretch), stretch_chunk(chunk, stretch)

    def robot_started(self, observation_time: float) -> None:
        """The observation after the robot's first step came, of `observation_time`: the episode's first chunk's
        action 0 was applied at that step (the robot starts an episode's first chunk at its next step, however long
        it took to come), so that chunk counts as sampled one period before."""
        self.chunk_time, self.aligned = observation_time - self.period, True

    def sent(self, observation_time: float, episode: int, chunk: np.ndarray, stretch: int = 1) -> int:
        """A chunk (as sampled) from the observation of `observation_time` was published, each action spread over
        `stretch` steps; returns its number in the episode."""
        if episode != self.episode:
            self.episode, self.chunks, self.aligned = episode, 0, False
        self.chunk_time, self.chunk, self.chunk_stretch = observation_time, chunk, stretch
        self.chunks += 1
        return self.chunks - 1


def run_timed_episode(env, runner, schedule: ChunkSchedule, obs, see, latency: float, seam: str = "inpaint",
                      frames: list | None = None, view: PolicyView | None = None) -> tuple:
    """One episode of timed execution on a simulated clock, without ROS: what the graph in timed mode does, with a
    sampling time that is exactly `latency` seconds every time (`minivla eval --latency`). Deterministic, so its
    figures cannot be lucky; the graph's own timing varies around them.

    The robot steps every `schedule.period` seconds; the observation after step k has time k * period. The policy
    side is `schedule` (when to sample, what to keep; one for all episodes of a run, so that its latency estimate
    carries over, as in the policy node), the robot side an ActionBuffer (what is due at each step), as in the
    simulator bridge. One sampling call runs at a time: a call started at time s delivers its
    chunk at s + latency; as in the node's sampling thread, the observations that come while it runs are not used
    (taking the newest of them at once would add its age, up to a step, to every chunk's latency: at 145 ms that
    made the schedule slow the arm to half speed, 24 of 50 episodes instead of 46), the next one is. The
    episode's first chunk is sampled from its first observation and the robot starts it at its next step, however
    long it took (the robot waits). `obs` is the episode's first observation (env reset);
    `see(images)` is what the policy sees at each step (images, or an ablation of them); each step's image goes to
    `frames` if given. `view` (view.py) is shown each observation, each chunk when it is sampled (with its
    denoising) and each action applied. Returns (final observation, ExecutorCounts, the error that stopped the
    policy or None)."""
    period = schedule.period
    buffer = ActionBuffer(period)
    episode, gripper = env.episode, -1.0
    view = view or PolicyView()
    shown = None  # (number, first action's due time) of the chunk the view shows

    def start_sampling(seen: np.ndarray, state: np.ndarray, observation_time: float, step: int, started: float):
        """A sampling call from this observation at time `started`, if the schedule says a chunk is due."""
        nonlocal shown
        planned = schedule.plan(observation_time, episode, step, inpaint=seam == "inpaint")
        if planned is None:
            return None
        stretch, frozen = planned
        chunk = runner.sample_continuing(seen, state, frozen)
        sampling = runner.last_sampling
        arrival = started + latency
        index, chunk = schedule.record(observation_time, episode, chunk, stretch, arrival - observation_time)
        view.chunk(state, chunk, runner.last_sample_seconds, lambda: runner.denoising(seen, state, sampling))
        shown = (index, observation_time + period)
        return arrival, observation_time + period, chunk, index

    try:
        seen = see(obs.images)
        view.observe(seen, obs.state)
        first = start_sampling(seen, obs.state, 0.0, 0, 0.0)
        buffer.add(episode, first[1], period, first[2], first[3], episode, now=0.0, next_step=period)
        sampling, step = None, 0
        while not obs.success and not env.done:
            step += 1
            now = step * period
            if sampling is not None and sampling[0] <= now:  # the chunk arrived since the step before
                arrival, first_due, chunk, index = sampling
                buffer.add(episode, first_due, period, chunk, index, episode, now=arrival)
                sampling = None
            action = buffer.take(now, episode)
            held = action is None
            if held:
                buffer.hold()
                action = np.array([0.0] * (env.action_dim - 1) + [gripper], dtype=np.float32)
            # Its place in the chunk shown, if it comes from that one (the chunk before runs while it is sampled)
            from_shown = not held and buffer.last_chunk == shown[0]
            view.action(action, round((now - shown[1]) / period) if from_shown else None)
            gripper = float(action[-1])
            obs = env.step(action)
            if frames is not None:
                frames.append(obs.image)
            seen = see(obs.images)
            if obs.success or env.done:
                break  # the policy never acts on an episode's final observation
            view.observe(seen, obs.state)
            if sampling is None:  # (an observation that comes while a chunk is sampled is not used)
                sampling = start_sampling(seen, obs.state, now, step, now)
    except NonFiniteActions:  # the checkpoint's weights, not this observation: for the caller to say
        raise
    except ValueError as exc:  # a state far outside the training states: the policy stops acting, the episode fails
        return obs, buffer.counts, f"step {env.step_count}: {exc}"
    return obs, buffer.counts, None
