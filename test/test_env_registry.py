"""The plug-in seam for simulated robots: every robot offers envs/base.py's SimRobot, and the task registry
(minivla_core/envs) finds the robot, expert and instruction of a task without importing other simulators."""

import subprocess
import sys

import numpy as np
import pytest

from minivla_test_utils import ROOT
from minivla_core.config import EnvConfig
from minivla_core.envs import TASKS, check_sim_task, make_env, make_sim_expert, sim_instruction
from minivla_core.envs.base import Observation, SimRobot, TaskFactories, TaskRegistry
from minivla_core.errors import TaskError


def protocol_members() -> list[str]:
    methods = [name for name in vars(SimRobot) if not name.startswith("_")]
    return sorted({*SimRobot.__annotations__, *methods})


@pytest.mark.parametrize("task", ["fetch-push", "reach-v3"])
def test_each_registered_robot_offers_the_sim_robot_interface(task):
    assert {"reset", "step", "done", "action_dim", "cameras", "arm_joint_names", "hand_step"} <= set(protocol_members())
    env = make_env(EnvConfig(task=task, image_size=32, max_episode_steps=3))
    try:
        missing = [name for name in protocol_members() if not hasattr(env, name)]
        assert missing == [], missing
        assert env.task == task and env.instruction == sim_instruction(task) and env.episode == -1
        obs = env.reset(0)
        expert = make_sim_expert(task)
        while not env.done:
            obs = env.step(np.clip(expert.get_action(obs.privileged), -1, 1))
        assert isinstance(obs, Observation) and env.step_count == 3 and obs.step == 3
        assert obs.images.shape == (len(env.cameras), 32, 32, 3) and obs.images.dtype == np.uint8
        assert obs.state.shape == (env.state_dim,) and obs.arm_joints.shape == (len(env.arm_joint_names),)
        with pytest.raises(RuntimeError, match="episode is over"):
            env.step(np.zeros(env.action_dim, np.float32))
    finally:
        env.close()


def test_finding_a_task_imports_no_other_robots_simulator():
    code = """
import sys
from minivla_core.envs import check_sim_task, sim_instruction
check_sim_task("fetch-push"), sim_instruction("fetch-push")
assert "metaworld" not in sys.modules and "gymnasium_robotics" not in sys.modules, "fetch"
check_sim_task("push-v3"), sim_instruction("push-v3")
assert "gymnasium_robotics" not in sys.modules, "meta-world"
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


def test_an_unknown_task_is_named_with_the_close_ones():
    for wrong, close in (("fetch-psuh", "fetch-push"), ("psuh-v3", "push-v3")):
        with pytest.raises(TaskError, match=f"unknown task '{wrong}': no simulated robot runs it. Did you mean "
                                            f".*{close}"):
            check_sim_task(wrong)
    assert "fetch-push" in TASKS.names() and "drawer-open-v3" in TASKS.names()


def test_the_fetch_registration_is_the_fetch_module_s_task():
    from minivla_core.envs import fetch_env

    assert fetch_env.TASK in TASKS.named and sim_instruction(fetch_env.TASK) == fetch_env.INSTRUCTION
    assert isinstance(make_sim_expert(fetch_env.TASK), fetch_env.FetchPushExpert)


def test_a_new_robot_registers_names_or_a_family_in_one_place():
    made = []
    single = TaskFactories("a one-task arm", lambda config: made.append(config.task) or "env",
                           lambda task: "expert", lambda task: f"do {task}")
    family = TaskFactories("a family", lambda config: "family env", lambda task: "family expert",
                           lambda task: task.replace("-", " "))
    listed = []

    def family_tasks():
        listed.append(1)
        return ["stack-blocks", "open-box"]

    registry = TaskRegistry()
    registry.add("wipe-table", single)
    registry.add_family(family_tasks, family)
    assert registry.lookup("wipe-table") is single and not listed  # a name found first asks no family
    assert registry.lookup("wipe-table").make_env(EnvConfig(task="wipe-table")) == "env" and made == ["wipe-table"]
    assert registry.lookup("open-box").instruction("open-box") == "open box" and listed
    assert registry.names() == ["wipe-table", "stack-blocks", "open-box"]
    with pytest.raises(ValueError, match="registered already"):
        registry.add("wipe-table", family)
    with pytest.raises(TaskError, match="Did you mean stack-blocks"):
        registry.lookup("stack-block")
