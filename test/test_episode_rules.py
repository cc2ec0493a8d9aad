"""The simulator bridge's episode rules (minivla_core/episode_rules.py) on a real MuJoCo env, without DDS."""

import numpy as np
import pytest

from minivla_core.config import EnvConfig
from minivla_core.episode_rules import EpisodeEnd, EpisodeRules, Holding, NewObservation, TaskSwitch


@pytest.fixture
def rules():
    rules = EpisodeRules(EnvConfig(image_size=32, max_episode_steps=30), command_timeout=0.5)
    yield rules
    rules.close()


def kinds(events):
    return [type(event).__name__ for event in events]


def test_nothing_steps_before_the_first_command(rules):
    for now in range(5):
        events = rules.tick(float(now))
        assert kinds(events) == ["NewObservation"]
    assert rules.env.step_count == 0 and not rules.started


def test_no_tick_does_anything_until_subscribers_are_ready_for_the_first_episode(rules):
    assert rules.tick(0.0, subscribers_ready=False) == []
    rules.command(np.array([0.0, 0.0, 0.0, -1.0], np.float32), 0.0)
    assert rules.tick(0.1, subscribers_ready=False) == []  # the command is dropped, not queued
    assert rules.env.step_count == 0
    assert kinds(rules.tick(0.2, subscribers_ready=True)) == ["NewObservation"]


def test_each_command_is_applied_once_then_the_arm_holds_still(rules):
    x = [rules.observation.state[0]]
    for k in range(5):  # full speed along x, gripper closed
        rules.command(np.array([1.0, 0.0, 0.0, 1.0], np.float32), 0.05 * k)
        rules.tick(0.05 * k)
        x.append(rules.observation.state[0])
    for k in range(10):  # no new command
        rules.tick(1.0 + 0.05 * k)
        x.append(rules.observation.state[0])
    speed = np.abs(np.diff(x))
    assert speed[3:5].min() > 0.004  # moving (the hand lags its mocap target at first)
    # Holding: the hand settles where the target stopped. Replaying the last command would keep it at ~7 mm a step.
    assert speed[-5:].max() < 0.002, speed
    assert rules.gripper == 1.0 and rules.env.step_count == 15


def test_holding_is_reported_once_per_pause_after_the_command_timeout(rules):
    rules.command(np.zeros(4, np.float32), 0.0)
    rules.tick(0.0)
    assert "Holding" not in kinds(rules.tick(0.4))
    reported = [rules.tick(t) for t in (0.6, 0.7, 0.8)]
    assert [kinds(events).count("Holding") for events in reported] == [1, 0, 0]
    assert isinstance(reported[0][0], Holding) and reported[0][0].idle_seconds == pytest.approx(0.6)
    rules.command(np.zeros(4, np.float32), 1.0)  # a new command ends the pause
    rules.tick(1.0)
    assert kinds(rules.tick(1.6)).count("Holding") == 1


def test_an_episode_times_out_and_the_next_layout_starts(rules):
    first_goal = rules.observation.privileged[36:39].copy()
    events = []
    for k in range(30):
        rules.command(np.zeros(4, np.float32), 0.05 * k)
        events += rules.tick(0.05 * k)
    ends = [e for e in events if isinstance(e, EpisodeEnd)]
    assert len(ends) == 1 and ends[0].reason == "time-out" and ends[0].steps == 30 and not ends[0].success
    assert isinstance(events[-1], NewObservation) and rules.env.episode == 1 and rules.env.step_count == 0
    assert not np.allclose(rules.observation.privileged[36:39], first_goal)  # another layout
    assert not rules.started  # the new episode's clock waits for its first command


def test_reset_and_the_episode_limit(rules):
    rules.episodes = 2
    events = rules.request_reset()
    assert kinds(events) == ["EpisodeEnd", "NewObservation"] and events[0].reason == "reset requested"
    assert rules.env.episode == 1
    assert kinds(rules.request_reset()) == ["EpisodeEnd"]  # the last one: no next observation
    assert rules.finished and rules.tick(10.0) == []


def test_a_task_switch_ends_the_episode_at_the_next_tick(rules):
    rules.command(np.zeros(4, np.float32), 0.0)
    rules.tick(0.0)
    rules.request_task("reach-v3")
    events = rules.tick(0.05)
    assert kinds(events) == ["EpisodeEnd", "TaskSwitch", "NewObservation"]
    assert events[0].task == "push-v3" and events[0].reason == "task switch"
    assert events[1] == TaskSwitch("push-v3", "reach-v3")
    assert rules.env.task == "reach-v3" and rules.env.episode == 1
    rules.request_task("reach-v3")  # the task it already runs: nothing ends
    assert kinds(rules.tick(0.1)) == ["NewObservation"]


def test_events_describe_the_episode_they_belong_to_even_after_the_env_moved_on(rules):
    """The caller publishes after tick() returns, when the env already holds the next episode."""
    events = []
    for k in range(30):
        rules.command(np.zeros(4, np.float32), 0.05 * k)
        events += rules.tick(0.05 * k)
    last, end, first = events[-3:]
    assert isinstance(last, NewObservation) and (last.episode, last.step) == (0, 30)
    assert isinstance(end, EpisodeEnd) and (end.episode, end.steps) == (0, 30)
    assert isinstance(first, NewObservation) and (first.episode, first.step) == (1, 0)
    steps = [e.step for e in events if isinstance(e, NewObservation) and e.episode == 0]
    assert steps == list(range(1, 31))


def test_motion_noise_moves_the_arm_off_the_commanded_path_the_same_way_for_a_layout():
    config = EnvConfig(image_size=32, max_episode_steps=30)
    paths = []
    for noise in (0.0, 0.5, 0.5):
        rules = EpisodeRules(config, motion_noise=noise)
        for step in range(5):
            rules.command(np.array([1.0, 0.0, 0.0, -1.0], dtype=np.float32), float(step))
            events = rules.tick(float(step))
        paths.append(events[-1].observation.state[:3].copy())
        rules.close()
    clean, noisy, again = paths
    assert np.abs(noisy - clean).max() > 1e-3  # off the commanded path
    np.testing.assert_array_equal(noisy, again)  # and the same for the same layout
