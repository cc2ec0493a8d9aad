"""What a simulated robot offers the rest of the project, and which robot runs which task.

- Observation: one step of a simulated robot: its camera images, the policy's state, and the privileged
  simulator state that only a scripted expert may read.
- SimRobot: the small interface every simulated robot implements (MetaWorldEnv, FetchEnv). The simulator
  bridge, evaluation, the timed executor and the episode rules use exactly these attributes and methods,
  and nothing else of a robot; a new robot that has them runs everywhere.
- Expert: a scripted expert, action = get_action(privileged state).
- TaskRegistry: task name -> the factories that make its robot, its expert and its instruction. A robot
  registers either single task names or a family (a function listing its tasks, e.g. Meta-World's 50),
  so finding a task never imports a simulator it does not need. envs/__init__.py holds the registrations.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

import numpy as np

from minivla_core.config import EnvConfig
from minivla_core.errors import TaskError


@dataclass
class Observation:
    images: np.ndarray  # (cameras, H, W, 3) uint8, upright; the scene camera first, then env.extra_cameras
    state: np.ndarray  # float32, what the policy gets: e.g. (4,) for "proprio", (39,) for Meta-World's "full"
    privileged: np.ndarray  # float32, the simulator's full state: for the scripted expert, never the policy
    reward: float = 0.0
    success: bool = False
    step: int = 0
    arm_joints: np.ndarray | None = None  # the arm's joint angles, radians, in the order of arm_joint_names

    @property
    def image(self) -> np.ndarray:
        """The scene camera's image, (H, W, 3)."""
        return self.images[0]


def joint_angles(model, data, names) -> np.ndarray:
    """The positions of MuJoCo joints `names` (hinge joints: radians), in that order (for arm_joints)."""
    return np.array([data.qpos[model.jnt_qposadr[model.joint(name).id]] for name in names])


class SimRobot(Protocol):
    """A simulated robot running one task. Episode `i` of a robot made with seed `S` always starts from the
    same layout; `step` after `done` is an error (reset first)."""

    task: str  # the task it runs
    instruction: str  # the task's plain instruction
    cameras: list[str]  # the camera of each image of an observation, scene camera first
    state_dim: int  # numbers in Observation.state
    arm_joint_names: tuple[str, ...]  # the joint of each number in Observation.arm_joints
    hand_step: float  # metres the hand moves in one step for an action of 1
    episode: int  # the current episode (-1 before the first reset)
    step_count: int  # steps taken in the current episode

    @property
    def action_dim(self) -> int: ...

    @property
    def done(self) -> bool:
        """True once the episode has used its max_episode_steps."""

    def reset(self, episode: int | None = None) -> Observation:
        """Start episode `episode` (None: the next one)."""

    def step(self, action: np.ndarray) -> Observation: ...

    def render(self) -> np.ndarray:
        """(cameras, H, W, 3) uint8: one upright image per camera."""

    def close(self) -> None: ...


class Expert(Protocol):
    def get_action(self, privileged: np.ndarray) -> np.ndarray:
        """The scripted action for this privileged state (Observation.privileged)."""


@dataclass(frozen=True)
class TaskFactories:
    """How to make what a task needs; each factory takes the task's name (make_env: the env config naming it)."""

    robot: str  # who runs the tasks, for messages: "Meta-World's Sawyer arm"
    make_env: Callable[[EnvConfig], SimRobot]
    make_expert: Callable[[str], Expert]
    instruction: Callable[[str], str]


class TaskRegistry:
    """Task name -> TaskFactories. Names registered one by one are found first, then the families, in the order
    they were registered (a family's list of tasks is asked for only when a name is not found before it)."""

    def __init__(self):
        self.named: dict[str, TaskFactories] = {}
        self.families: list[tuple[Callable[[], Iterable[str]], TaskFactories]] = []

    def add(self, task: str, factories: TaskFactories) -> None:
        if task in self.named:
            raise ValueError(f"task {task!r} is registered already (by {self.named[task].robot})")
        self.named[task] = factories

    def add_family(self, tasks: Callable[[], Iterable[str]], factories: TaskFactories) -> None:
        """Every task `tasks()` lists (called on look-up, so it may import its simulator then)."""
        self.families.append((tasks, factories))

    def lookup(self, task: str) -> TaskFactories:
        """The factories of `task`; TaskError naming the closest known names if no robot runs it."""
        if task in self.named:
            return self.named[task]
        for tasks, factories in self.families:
            if task in tasks():
                return factories
        names = self.names()
        close = difflib.get_close_matches(task, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise TaskError(f"unknown task {task!r}: no simulated robot runs it.{hint} Known tasks: {', '.join(names)}")

    def names(self) -> list[str]:
        """Every task some registered robot runs."""
        return [*self.named, *(task for tasks, _ in self.families for task in tasks())]
