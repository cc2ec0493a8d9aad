"""Timed execution without ROS (minivla_core/timed.py): the robot side's buffer and the policy side's schedule,
and the inpainting sampler that keeps a chunk's frozen actions."""

import numpy as np
import pytest

from minivla_core.checkpoint import load_policy
from minivla_core.timed import ActionBuffer, ChunkSchedule
from minivla_test_utils import ROOT

PERIOD = 0.05


def chunk(first: float, n: int = 8) -> np.ndarray:
    """Actions whose x is first, first + 0.01, ...: which one was applied can be read off it."""
    return np.array([[first + 0.01 * i, 0.0, 0.0, -1.0] for i in range(n)], dtype=np.float32)


def test_the_action_due_at_each_step_is_applied_and_expired_ones_are_dropped():
    buffer = ActionBuffer(PERIOD)
    assert buffer.add(0, first_due=10.0, period=PERIOD, actions=chunk(0.0), chunk=0, current_episode=0, now=9.99)
    assert buffer.take(10.0, 0)[0] == pytest.approx(0.0)
    assert buffer.take(10.05 + 0.02, 0)[0] == pytest.approx(0.01)  # a step a little late still takes its action
    # The robot missed three steps: the actions due then expired and are never applied late.
    assert buffer.take(10.25, 0)[0] == pytest.approx(0.05)
    assert buffer.counts.expired == 3 and buffer.counts.applied == 3 and buffer.counts.late == 0
    assert buffer.take(10.30, 0)[0] == pytest.approx(0.06)
    assert buffer.take(10.35, 0)[0] == pytest.approx(0.07)
    assert buffer.take(10.40, 0) is None  # the chunk ran out: nothing is due, the arm holds


def test_a_newer_chunk_replaces_the_older_from_its_first_action_on():
    buffer = ActionBuffer(PERIOD)
    buffer.add(0, 10.0, PERIOD, chunk(0.0), 0, 0, now=9.99)
    assert buffer.take(10.0, 0)[0] == pytest.approx(0.0)
    # Sampled from the observation of 10.0 in 80 ms: its action 0 (due 10.05) came too late, the old one's ran then.
    buffer.add(0, 10.05, PERIOD, chunk(0.5), 1, 0, now=10.08)
    assert buffer.counts.late == 1
    assert buffer.take(10.05, 0)[0] == pytest.approx(0.01)  # still the old chunk's
    assert buffer.take(10.10, 0)[0] == pytest.approx(0.51)  # the new chunk's first in time
    assert buffer.counts.seams == 1 and buffer.counts.max_seam_jump == pytest.approx(0.50)
    assert buffer.counts.superseded == 6 and buffer.counts.expired == 0  # the old chunk's rest: replaced, not skipped


def test_no_action_of_another_episode_is_ever_applied():
    buffer = ActionBuffer(PERIOD)
    buffer.add(3, 10.0, PERIOD, chunk(0.0), 0, current_episode=3, now=9.99)
    assert buffer.take(10.0, 3) is not None
    # The robot moved on to episode 4: the rest of episode 3's chunk is gone, and a late chunk of 3 is refused.
    assert buffer.take(10.05, 4) is None
    assert not buffer.add(3, 10.10, PERIOD, chunk(0.3), 1, current_episode=4, now=10.06)
    assert buffer.counts.refused_chunks == 1
    assert all(buffer.take(10.05 + PERIOD * i, 4) is None for i in range(10))
    assert buffer.add(4, 11.0, PERIOD, chunk(0.7), 0, current_episode=4, now=10.99)
    assert buffer.take(11.0, 4)[0] == pytest.approx(0.7)


def test_an_episodes_first_chunk_starts_at_the_robots_next_step_however_late_it_came():
    buffer = ActionBuffer(PERIOD)
    buffer.add(0, first_due=10.0, period=PERIOD, actions=chunk(0.0), chunk=0, current_episode=0, now=10.37,
               next_step=10.4)
    assert buffer.take(10.4, 0)[0] == pytest.approx(0.0)  # action 0 first, though its own due time had passed


def test_the_schedule_samples_so_that_a_chunk_runs_n_action_steps_whatever_the_latency():
    for latency in (0.01, 0.11, 0.16):
        schedule = ChunkSchedule(PERIOD, horizon=8, n_action_steps=4, margin=0.0)
        schedule.measured(latency)
        assert schedule.due(0.0, 0, 0)
        schedule.sent(0.0, 0, chunk(0.0))
        steps = next(k for k in range(1, 8) if schedule.due(k * PERIOD, 0, k))
        arrival = steps * PERIOD + latency
        first_usable = next(i for i in range(8) if steps * PERIOD + (i + 1) * PERIOD > arrival)
        # the new chunk takes over when the old chunk has run 4 actions (or as soon as possible after)
        assert steps + first_usable == 4, (latency, steps, first_usable)
        frozen = schedule.frozen_prefix(steps * PERIOD, 0)
        assert len(frozen) == first_usable  # exactly the actions the robot executes from the old chunk meanwhile
        np.testing.assert_array_equal(frozen, chunk(0.0)[steps: steps + first_usable])


def test_the_schedule_waits_for_the_robot_to_start_and_starts_each_episode_afresh():
    schedule = ChunkSchedule(PERIOD, horizon=8, n_action_steps=4)
    schedule.measured(0.2)
    schedule.sent(0.0, 0, chunk(0.0))
    assert not schedule.due(0.05, 0, 0)  # the robot re-sends its first observation: not started yet
    schedule.robot_started(0.5)  # it applied action 0 at 0.5: that chunk counts as sampled at 0.45
    assert schedule.chunk_time == pytest.approx(0.45)
    assert schedule.due(0.5, 1, 0) and len(schedule.frozen_prefix(0.5, 1)) == 0  # another episode


def test_inpainting_keeps_the_frozen_actions_and_nothing_frozen_is_plain_sampling():
    from minivla_core.model.policy import PolicyRunner

    policy, _ = load_policy(ROOT / "checkpoints" / "push_v3.pt")
    runner = PolicyRunner(policy, "push the puck to the goal")
    images = np.random.default_rng(0).integers(0, 255, (1, policy.image_size, policy.image_size, 3), dtype=np.uint8)
    state = np.array([0.0, 0.6, 0.2, 1.0], dtype=np.float32)
    runner.reset(0)
    plain = runner.sample_chunk(images, state)
    runner.reset(0)
    np.testing.assert_array_equal(runner.sample_continuing(images, state, np.zeros((0, 4))), plain)
    runner.reset(0)
    continued = runner.sample_continuing(images, state, plain[4:7])
    np.testing.assert_allclose(continued[:3], plain[4:7], atol=1e-6)
    assert not np.allclose(continued[3:], plain[3:])


def test_sampling_slower_than_half_a_chunk_slows_the_robot_instead_of_stopping_it():
    from minivla_core.timed import stretch_chunk

    schedule = ChunkSchedule(PERIOD, horizon=8, n_action_steps=4)
    schedule.measured(0.03)
    assert schedule.stretch() == 1
    for _ in range(10):
        schedule.measured(0.35)  # +300 ms: a chunk of 8 x 50 ms would be used up before the next came
    assert schedule.stretch() == 2
    slow = stretch_chunk(chunk(0.2), 2)
    assert len(slow) == 16
    np.testing.assert_allclose(slow[0::2, 0], chunk(0.2)[:, 0] / 2)  # the same path, half a step at a time
    np.testing.assert_array_equal(slow[:, 3], -1.0)  # the gripper's command is kept


def test_timed_on_a_simulated_clock_matches_the_classic_loop_when_sampling_takes_less_than_a_step():
    """Latency under one period: every chunk arrives before its first action is due, so timed execution is the
    classic loop, episode by episode, to the step."""
    from minivla_core.config import EnvConfig, EvalConfig
    from minivla_core.evaluate import evaluate

    checkpoint = str(ROOT / "checkpoints" / "push_v3.pt")
    classic = evaluate(EvalConfig(checkpoint=checkpoint, episodes=3), EnvConfig(), progress=False).only
    timed = evaluate(EvalConfig(checkpoint=checkpoint, episodes=3, latency=0.03), EnvConfig(), progress=False).only
    assert [(e["success"], e["steps"]) for e in timed.per_episode] == \
        [(e["success"], e["steps"]) for e in classic.per_episode]
    assert all(e["executor"]["late"] == 0 and e["executor"]["held"] == 0 for e in timed.per_episode)
    assert timed.timing.startswith("timed: latency 30 ms")


@pytest.mark.parametrize("latency", [0.115, 0.315])
def test_sampling_ahead_keeps_the_arm_moving_however_slow_sampling_is(latency):
    """+100 and +300 ms: the next chunk is sampled early enough (and at 315 ms the robot slowed) that no step of a
    started episode finds the buffer empty; the actions due while a chunk was sampled came from the chunk before."""
    from minivla_core.config import EnvConfig, EvalConfig
    from minivla_core.evaluate import evaluate

    config = EvalConfig(checkpoint=str(ROOT / "checkpoints" / "push_v3.pt"), episodes=2, latency=latency)
    result = evaluate(config, EnvConfig(), progress=False).only
    for episode in result.per_episode:
        counts = episode["executor"]
        assert counts["held"] == 0 and counts["expired"] == 0
        assert counts["late"] > 0  # the latency was real: chunks came after their first actions' steps
        assert counts["applied"] == episode["steps"]


def test_bad_timed_settings_are_refused_with_the_setting_named():
    from minivla_core.config import EnvConfig, EvalConfig
    from minivla_core.errors import ConfigError
    from minivla_core.evaluate import evaluate

    for bad, name in ((dict(latency=-0.1), "eval.latency"), (dict(latency=float("nan")), "eval.latency"),
                      (dict(latency=0.1, step_rate=0.0), "eval.step_rate"), (dict(seam="blend"), "eval.seam")):
        with pytest.raises(ConfigError, match=name):
            evaluate(EvalConfig(checkpoint=str(ROOT / "checkpoints" / "push_v3.pt"), **bad), EnvConfig())
