"""The policy node's and the bridge's rules without ROS: observation assembly (minivla_core/sync.py), the policy-side
drivers of each timing mode (minivla_core/drivers.py), the robot-side stepping (minivla_core/stepping.py) and the
timing agreement (minivla_core/timing.py). Real checkpoint, real MuJoCo; no DDS."""

import threading

import numpy as np
import pytest

from minivla_core.checkpoint import load_policy
from minivla_core.config import EnvConfig
from minivla_core.drivers import (
    Chunk, Command, FreeDriver, LockstepDriver, Stop, TimedDriver, stop_action, why_not_ready)
from minivla_core.episode_rules import EpisodeRules
from minivla_core.errors import ConfigError
from minivla_core.model.policy import PolicyRunner
from minivla_core.stepping import ChunkRefused, LockstepStepping, TimedStepping, Unanswered
from minivla_core.sync import EpisodeStatus, ObservationAssembler, SyncedObservation
from minivla_core.timed import MAX_CHUNK_ACTIONS, ActionBuffer
from minivla_core.timing import check_agreement, check_timing
from minivla_test_utils import ROOT

PERIOD = 0.05
INSTRUCTION = "push the puck to the goal"


@pytest.fixture(scope="module")
def policy():
    return load_policy(ROOT / "checkpoints" / "push_v3.pt")[0]


def observation(policy, stamp=(10, 0), episode=0, step=1, state=(0.0, 0.6, 0.2, 1.0)) -> SyncedObservation:
    images = np.random.default_rng(0).integers(0, 255, (1, policy.image_size, policy.image_size, 3), dtype=np.uint8)
    return SyncedObservation(stamp, images, np.array(state, dtype=np.float32), episode, step)


# --- observation assembly --------------------------------------------------------------------------------------
def test_an_observation_is_delivered_once_when_every_part_shares_its_stamp():
    assembler = ObservationAssembler(2, ["pose", "joints"], with_status=True, stale_after=0.25, exact=True)
    image = np.zeros((8, 8, 3), np.uint8)
    parts = [("camera 0", image), ("camera 1", image), ("pose", [1.0, 2.0, 3.0]), ("joints", [4.0]),
             ("status", EpisodeStatus(episode=2, step=5, final=False))]
    delivered = [assembler.put(part, (1, 0), value, now=0.0) for part, value in parts]
    assert delivered[:-1] == [None] * 4  # incomplete until the last part
    complete = delivered[-1]
    assert complete.stamp == (1, 0) and complete.episode == 2 and complete.step == 5
    np.testing.assert_array_equal(complete.state, [1.0, 2.0, 3.0, 4.0])  # pose, then joints
    assert complete.images.shape == (2, 8, 8, 3)
    assert assembler.put("pose", (1, 0), [1.0, 2.0, 3.0], now=0.01) is None  # delivered already
    assert assembler.put("camera 0", (2, 0), image, now=0.02) is None  # parts of two stamps: not complete


def test_final_observations_and_those_before_the_episode_start_are_not_delivered():
    assembler = ObservationAssembler(1, ["state"], with_status=True, stale_after=0.25, exact=True)
    image = np.zeros((8, 8, 3), np.uint8)

    def deliver(stamp, final=False):
        assembler.put("camera 0", stamp, image, 0.0)
        assembler.put("state", stamp, [0.0], 0.0)
        return assembler.put("status", stamp, EpisodeStatus(0, 3, final), 0.0)

    assert deliver((5, 0), final=True) is None  # an episode's last observation: the simulator moves on anyway
    assembler.start_episode((7, 0))
    assert deliver((6, 0)) is None  # older than the current episode's start
    assert deliver((7, 0)) is not None


def test_stale_inputs_are_named_and_free_timing_uses_the_newest_of_each():
    assembler = ObservationAssembler(1, ["state"], with_status=False, stale_after=0.25, exact=False,
                                     labels={"camera 0": "corner2 camera image", "state": "robot state"})
    assert "corner2 camera image is stale" in assembler.why_stale(now=1.0)
    assert assembler.put("camera 0", (1, 0), np.zeros((8, 8, 3), np.uint8), now=1.0) is None
    assert assembler.newest() is None  # no state yet
    assembler.put("state", (1, 5), [0.5], now=1.1)
    assert assembler.why_stale(now=1.2) is None
    assert "corner2 camera image is stale" in assembler.why_stale(now=1.3)
    assert assembler.newest().stamp == (1, 0)  # stamped as the scene camera's image


def test_readiness_names_what_to_fix_first():
    assert why_not_ready("no policy loaded: missing.pt", False, True, False, None).startswith("no policy")
    assert "activate" in why_not_ready(None, False, True, False, None)
    assert "paused" in why_not_ready(None, True, True, True, None)
    assert why_not_ready(None, True, False, False, None) == "no instruction received yet"
    assert why_not_ready(None, True, False, True, "state is stale") == "state is stale"
    assert why_not_ready(None, True, False, True, None) is None


# --- free and lockstep drivers ----------------------------------------------------------------------------------
def test_lockstep_answers_each_observation_naming_it_and_a_free_tick_names_its_chunks_observation(policy):
    published = []
    driver = LockstepDriver(PERIOD, policy.action_dim, published.append, lambda level, text: None)
    driver.set_runner(PolicyRunner(policy, INSTRUCTION))
    driver.activate()
    driver.new_episode(0)
    driver.observe(observation(policy, stamp=(3, 0)))
    driver.observe(observation(policy, stamp=(3, 50_000_000)))
    assert [p.observation_stamp for p in published] == [(3, 0), (3, 50_000_000)]
    assert all(isinstance(p, Command) and p.chunk == 0 for p in published)
    assert [p.step_in_chunk for p in published] == [0, 1]

    published.clear()
    free = FreeDriver(PERIOD, policy.action_dim, published.append, lambda level, text: None)
    free.set_runner(PolicyRunner(policy, INSTRUCTION))
    free.activate()
    free.tick(observation(policy, stamp=(8, 0)))
    free.tick(observation(policy, stamp=(8, 50_000_000)))
    assert [p.observation_stamp for p in published] == [(8, 0), (8, 0)]  # both from the chunk of (8, 0)


def test_an_action_beyond_the_robots_limits_is_never_published_the_driver_holds(policy):
    published, logged = [], []

    def too_far(action):
        raise ValueError("beyond robot.action_limits")

    driver = LockstepDriver(PERIOD, policy.action_dim, published.append, lambda level, text: logged.append(text),
                            check_limits=too_far)
    driver.set_runner(PolicyRunner(policy, INSTRUCTION))
    driver.activate()
    driver.observe(observation(policy))
    assert len(published) == 1 and isinstance(published[0], Stop)
    np.testing.assert_array_equal(published[0].action, [0, 0, 0, -1])  # standing still, gripper open
    assert "beyond robot.action_limits" in logged[0]


def test_a_robot_with_no_gripper_gets_its_commands_whole_and_a_hold_of_all_zeros():
    """A twist and no gripper: 3-number actions are published whole, and a hold zeroes every number (with a gripper
    the hold keeps the last number, which here would be the z velocity last commanded: issue 23)."""
    import torch

    from minivla_core.model.policy import VLAPolicy
    from minivla_core.model.tokenizer import WordTokenizer
    from minivla_test_utils import tiny_model_config

    vocab = WordTokenizer.from_texts(["reach the red dot"]).vocab
    policy = VLAPolicy(tiny_model_config(), vocab, state_dim=5, action_dim=3, image_size=32)
    policy.action_normalizer.fit(torch.rand(100, 3) * 2 - 1)
    published = []
    driver = LockstepDriver(PERIOD, policy.action_dim, published.append, lambda level, text: None, gripper=False)
    driver.set_runner(PolicyRunner(policy, "reach the red dot"))
    driver.activate()
    driver.observe(observation(policy, state=(0.2, 0.3, 0.1, 0.5, 1.2)))
    assert isinstance(published[0], Command) and published[0].action.shape == (3,), published
    driver.last_action = np.array([0.3, -0.2, 0.5], np.float32)
    driver.hold()
    assert isinstance(published[-1], Stop)
    np.testing.assert_array_equal(published[-1].action, [0.0, 0.0, 0.0])
    assert stop_action(4, np.array([0.3, -0.2, 0.5, 1.0]), gripper=True).tolist() == [0.0, 0.0, 0.0, 1.0]


# --- the timed driver -------------------------------------------------------------------------------------------
class BlockingRunner(PolicyRunner):
    """A real runner whose sampling waits, once started, until the test lets it finish."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.started, self.release = threading.Event(), threading.Event()

    def sample_continuing(self, images, state, frozen):
        self.started.set()
        assert self.release.wait(30)
        return super().sample_continuing(images, state, frozen)


def timed_driver(policy, published, clock=lambda: 100.0):
    driver = TimedDriver(PERIOD, policy.action_dim, published.append, lambda level, text: None,
                         horizon=policy.config.horizon, inpaint=True, clock=clock)
    driver.new_episode(0)
    driver.activate()
    return driver


def wait_for(condition, timeout=30.0):
    import time

    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_a_chunk_sampled_while_the_driver_is_deactivated_is_never_published_after_the_stop_chunk(policy):
    """The race of issue 22, made deterministic: the sampler is inside sampling when deactivate comes."""
    published = []
    driver = timed_driver(policy, published)
    runner = BlockingRunner(policy, INSTRUCTION)
    try:
        driver.set_runner(runner)
        driver.last_action = np.array([0.3, 0.0, 0.0, 1.0], dtype=np.float32)  # commanded before, gripper closed
        driver.observe(observation(policy, stamp=(100, 0), step=0))
        assert runner.started.wait(30)  # the sampling thread is now sampling
        deactivating = threading.Thread(target=driver.deactivate)  # while it samples (a deactivate that waited
        deactivating.start()  # for the sampler would wait here)
        wait_for(lambda: len(published) == 1)  # the stop chunk is out
        runner.release.set()  # the sampler finishes its chunk
        deactivating.join(30)
        driver.close()  # joins the sampling thread: whatever it would publish, it has
        assert len(published) == 1, published  # the stop chunk, and nothing after it
        stop = published[-1]
        assert isinstance(stop, Chunk)
        np.testing.assert_array_equal(stop.actions[:, :3], 0.0)
        np.testing.assert_array_equal(stop.actions[:, 3], 1.0)  # the gripper stays closed
    finally:
        runner.release.set()
        driver.close()


def test_chunk_numbers_grow_through_holds_so_a_robot_refuses_anything_older_than_the_stop(policy):
    published = []
    driver = timed_driver(policy, published)
    try:
        driver.set_runner(PolicyRunner(policy, INSTRUCTION))
        driver.observe(observation(policy, stamp=(100, 0), step=0))
        wait_for(lambda: len(published) == 1)
        driver.hold()
        driver.observe(observation(policy, stamp=(100, 50_000_000), step=1))  # the schedule starts afresh
        wait_for(lambda: len(published) == 3)
    finally:
        driver.close()
    first, stop, after = published
    assert (first.number, stop.number, after.number) == (0, 1, 2)
    assert np.abs(stop.actions[:, :3]).max() == 0 and np.abs(after.actions[:, :3]).max() > 0
    buffer = ActionBuffer(PERIOD)
    assert buffer.add(0, 100.05, PERIOD, first.actions, first.number, 0, now=100.01)
    assert buffer.add(0, 100.10, PERIOD, stop.actions, stop.number, 0, now=100.06)
    assert not buffer.add(0, 100.15, PERIOD, first.actions, first.number, 0, now=100.11)  # older than the stop
    assert buffer.counts.refused_chunks == 1


def test_the_timed_driver_publishes_nothing_while_inactive_and_only_for_the_current_episode(policy):
    published = []
    driver = timed_driver(policy, published)
    try:
        driver.set_runner(PolicyRunner(policy, INSTRUCTION))
        driver.observe(observation(policy, episode=1, step=0))  # an episode the driver is not in
        driver.deactivate()
        driver.observe(observation(policy, stamp=(10, 50_000_000), episode=0, step=0))
        driver.observe(observation(policy, stamp=(10, 100_000_000), episode=0, step=0))
    finally:
        driver.close()
    assert all(isinstance(p, Chunk) and p.episode == 0 for p in published)
    assert all(np.abs(p.actions[:, :3]).max() == 0 for p in published)  # at most the stop chunk


# --- the robot side ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rules():
    rules = EpisodeRules(EnvConfig(task="push-v3", image_size=32, max_episode_steps=50))
    yield rules
    rules.close()


def test_timed_stepping_refuses_chunks_too_long_of_a_bad_period_or_planned_for_another_rate(rules):
    stepping = TimedStepping(rules, step_rate=20.0)
    still = np.zeros((8, 4), np.float32)
    for actions, period, reason in ((np.zeros((MAX_CHUNK_ACTIONS + 1, 4), np.float32), PERIOD, "actions"),
                                    (still, float("inf"), "period"), (still, float("nan"), "period"),
                                    (still, 0.0, "period"), (still, 0.1, "steps 20 times a second")):
        with pytest.raises(ValueError, match=reason):
            stepping.chunk(rules.env.episode, 100.0, period, actions, 0, ros_now=99.99)
    assert stepping.chunk(rules.env.episode, 100.0, PERIOD, still, 0, ros_now=99.99) == []
    assert isinstance(stepping.chunk(rules.env.episode + 1, 100.0, PERIOD, still, 1, 99.99)[0], ChunkRefused)
    with pytest.raises(ValueError, match="timed chunks"):
        stepping.command(still[0], (1, 0), 0.0)


def test_lockstep_steps_only_on_an_answer_to_the_newest_observation(rules):
    stepping = LockstepStepping(rules, step_rate=20.0)  # rules.command_timeout: 0.5
    stepping.published(rules.env.episode, rules.env.step_count, (1, 0), now=0.0)
    assert stepping.tick(now=0.1, ros_now=1.1) == []  # waits for the answer
    step = rules.env.step_count
    events = stepping.command(np.array([0.5, 0, 0, -1], np.float32), (1, 0), now=0.2)
    assert rules.env.step_count == step + 1 and events  # it stepped: the next observation
    stepping.published(rules.env.episode, rules.env.step_count, (1, 50_000_000), now=0.2)
    assert stepping.command(np.zeros(4, np.float32), (1, 0), now=0.25) == []  # a late answer: not applied
    assert isinstance(stepping.command(np.zeros(4, np.float32), (0, 7), now=0.3)[0], Unanswered)
    assert rules.env.step_count == step + 1


def test_one_timing_module_checks_that_both_sides_agree():
    check_agreement("timed", 20.0, "timed", 20.0)
    check_agreement("lockstep", 20.0, "lockstep", 5.0)  # lockstep does not use control_rate
    with pytest.raises(ConfigError, match="same timing mode"):
        check_agreement("lockstep", 20.0, "free", 20.0)
    with pytest.raises(ConfigError, match="must equal bridge.step_rate"):
        check_agreement("timed", 20.0, "timed", 10.0)
    with pytest.raises(ConfigError, match="run.timing must be one of"):
        check_timing("fast", "run.timing")


# --- the planned path (policy_node.publish_plan) ----------------------------------------------------------------
def test_the_planned_hand_path_starts_at_the_hand_and_adds_each_step():
    from minivla_core.view import planned_hand_path

    chunk = np.array([[1.0, 0.0, 0.0, 1.0], [0.0, -1.0, 0.5, 1.0], [1.0, 1.0, 0.0, -1.0]])
    path = planned_hand_path(np.array([0.1, 0.6, 0.2, 0.9]), chunk, hand_step=0.01)
    np.testing.assert_allclose(path, [[0.1, 0.6, 0.2], [0.11, 0.6, 0.2], [0.11, 0.59, 0.205], [0.12, 0.6, 0.205]])
    with pytest.raises(ValueError, match="x, y, z"):
        planned_hand_path(np.zeros(4), np.zeros((8, 2)), 0.01)  # a two-joint robot's chunk is no hand path


def test_the_plan_is_drawn_only_for_a_hand_position_and_a_hand_velocity():
    from minivla_core.actions import HAND_STEP
    from minivla_core.view import plan_hand_step

    assert plan_hand_step("ActionCommand", True, "push-v3", 0.2, 20.0) == (HAND_STEP, "")
    assert plan_hand_step("TwistStamped", True, "myarm", 0.2, 20.0) == (pytest.approx(0.01), "")
    step, why = plan_hand_step("JointTrajectory", True, "myarm", 0.2, 20.0)
    assert step is None and "not a hand velocity" in why
    step, why = plan_hand_step("ActionCommand", False, "push-v3", 0.2, 20.0)
    assert step is None and "hand's position" in why
    step, why = plan_hand_step("ActionCommand", True, "fetch-push", 0.2, 20.0)
    assert step is None and "fetch-push" in why


@pytest.mark.parametrize("driver_class", [FreeDriver, LockstepDriver])
def test_every_new_chunk_and_its_observation_reach_the_planned_hook_once(policy, driver_class):
    """Free and lockstep drivers act step by step; the hook hears of each chunk once, when it is sampled."""
    planned, commands = [], []
    driver = driver_class(PERIOD, policy.action_dim, commands.append, lambda level, text: None,
                          planned=lambda obs, actions: planned.append((obs.stamp, np.array(actions))))
    driver.activate()
    driver.set_runner(PolicyRunner(policy, INSTRUCTION, seed=0))
    for step in range(policy.config.n_action_steps + 1):
        seen = observation(policy, stamp=(10, step))
        driver.observe(seen) if driver_class is LockstepDriver else driver.tick(seen)
    assert [stamp for stamp, _ in planned] == [(10, 0), (10, policy.config.n_action_steps)]
    assert planned[0][1].shape == (policy.config.horizon, policy.action_dim)
    np.testing.assert_allclose(commands[0].action, planned[0][1][0], atol=1e-6)  # the chunk the robot executes
