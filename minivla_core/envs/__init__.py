"""The simulated robots, behind one small interface: reset(episode) -> Observation, step(action) -> Observation.

- MetaWorldEnv (envs/metaworld_env.py): Meta-World's Sawyer arm, 50 tasks; the project's main robot.
- FetchEnv (envs/fetch_env.py): gymnasium-robotics' Fetch arm pushing a block, task "fetch-push"; the
  second robot, which shows that nothing in the pipeline is Meta-World's.

The functions below pick one by task name, so the simulator bridge, the expert node and `minivla run` /
`record` take either. Meta-World and gymnasium-robotics are imported only when their env is made.
"""

from __future__ import annotations

from minivla_core.config import EnvConfig

FETCH_TASK = "fetch-push"  # the one Fetch task (envs/fetch_env.py: TASK)


def check_sim_task(task: str) -> str:
    """A task some simulated robot runs: fetch-push or a Meta-World task (TaskError naming the close ones)."""
    if task == FETCH_TASK:
        return task
    from minivla_core.envs.metaworld_env import check_task

    return check_task(task)


def make_env(config: EnvConfig):
    """The simulated robot that runs `config.task` (Fetch takes image_size, max_episode_steps and seed; its
    camera is its own)."""
    if check_sim_task(config.task) == FETCH_TASK:
        from minivla_core.envs.fetch_env import FetchConfig, FetchEnv

        return FetchEnv(FetchConfig(image_size=config.image_size, max_episode_steps=config.max_episode_steps,
                                    seed=config.seed))
    from minivla_core.envs.metaworld_env import MetaWorldEnv

    return MetaWorldEnv(config)


def make_sim_expert(task: str):
    """The scripted expert of `task`: expert.get_action(privileged state) -> action."""
    if check_sim_task(task) == FETCH_TASK:
        from minivla_core.envs.fetch_env import FetchPushExpert

        return FetchPushExpert()
    from minivla_core.envs.metaworld_env import make_expert

    return make_expert(task)


def sim_instruction(task: str) -> str:
    """The task's plain instruction."""
    if check_sim_task(task) == FETCH_TASK:
        from minivla_core.envs.fetch_env import INSTRUCTION

        return INSTRUCTION
    from minivla_core.envs.metaworld_env import instruction_for

    return instruction_for(task)
