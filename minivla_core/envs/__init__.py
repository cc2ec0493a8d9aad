"""The simulated robots, and the one place where each says which tasks it runs (TASKS).

- MetaWorldEnv (envs/metaworld_env.py): Meta-World's Sawyer arm, 50 tasks; the project's main robot.
- FetchEnv (envs/fetch_env.py): gymnasium-robotics' Fetch arm pushing a block, task "fetch-push"; the
  second robot, which shows that nothing in the pipeline is Meta-World's.

Both implement envs/base.py's SimRobot: reset(episode) -> Observation, step(action) -> Observation. The
functions below look the task up in TASKS, so the simulator bridge, the expert node, `minivla eval`, `run` and
`record` take any registered robot. A new robot: a module with a SimRobot class, and one registration below.
Each robot's module is imported only when one of its factories runs, and Meta-World and gymnasium-robotics
only when their env (or Meta-World's expert or list of tasks) is made.
"""

from __future__ import annotations

from minivla_core.config import EnvConfig
from minivla_core.envs.base import Expert, Observation, SimRobot, TaskFactories, TaskRegistry

__all__ = ["TASKS", "Expert", "Observation", "SimRobot", "check_sim_task", "make_env", "make_sim_expert",
           "sim_instruction"]


def make_fetch(config: EnvConfig) -> SimRobot:
    """Fetch takes image_size, max_episode_steps and seed; its camera is its own."""
    from minivla_core.envs.fetch_env import FetchConfig, FetchEnv

    return FetchEnv(FetchConfig(image_size=config.image_size, max_episode_steps=config.max_episode_steps,
                                seed=config.seed))


def fetch_expert(task: str) -> Expert:
    from minivla_core.envs.fetch_env import FetchPushExpert

    return FetchPushExpert()


def fetch_instruction(task: str) -> str:
    from minivla_core.envs.fetch_env import INSTRUCTION

    return INSTRUCTION


def metaworld_tasks() -> list[str]:
    from minivla_core.envs.metaworld_env import task_names

    return task_names()


def make_metaworld(config: EnvConfig) -> SimRobot:
    from minivla_core.envs.metaworld_env import MetaWorldEnv

    return MetaWorldEnv(config)


def metaworld_expert(task: str) -> Expert:
    from minivla_core.envs.metaworld_env import make_expert

    return make_expert(task)


def metaworld_instruction(task: str) -> str:
    from minivla_core.envs.metaworld_env import instruction_for

    return instruction_for(task)


TASKS = TaskRegistry()
# fetch_env.TASK, written out so that finding it imports nothing
TASKS.add("fetch-push", TaskFactories("gymnasium-robotics' Fetch arm", make_fetch, fetch_expert, fetch_instruction))
TASKS.add_family(metaworld_tasks, TaskFactories("Meta-World's Sawyer arm", make_metaworld, metaworld_expert,
                                                metaworld_instruction))


def check_sim_task(task: str) -> str:
    """A task some simulated robot runs (TaskError naming the close ones)."""
    TASKS.lookup(task)
    return task


def make_env(config: EnvConfig) -> SimRobot:
    """The simulated robot that runs `config.task`."""
    return TASKS.lookup(config.task).make_env(config)


def make_sim_expert(task: str) -> Expert:
    """The scripted expert of `task`: expert.get_action(privileged state) -> action."""
    return TASKS.lookup(task).make_expert(task)


def sim_instruction(task: str) -> str:
    """The task's plain instruction."""
    return TASKS.lookup(task).instruction(task)
