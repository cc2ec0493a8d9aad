"""Meta-World v3 behind a small interface: reset() -> Observation, step(action) -> Observation.

What this wrapper decides for you:
- Variants: Meta-World's MT1 benchmark fixes 50 goal/object layouts per seed. Here every
  episode draws a fresh layout from a seeded stream instead: episode `i` of a run with seed `S`
  always gets the same layout, and two different run seeds never share one. A seed's range is its role
  (config.SEED_ROLES): collection 0-999 (seed 0 by default), validation 1000-1999 (`minivla eval`'s 1000),
  test 2000 and up, so evaluation is on layouts never seen in training.
- What the policy's state is, is one setting, `env.observation`:
    "proprio" (the default): hand x, y, z and gripper opening, the first 4 of Meta-World's numbers
        (LeRobot's `agent_pos`). A real arm knows these about itself. Where the puck, the drawer or
        the goal are, the policy has to see in the camera image (the goal shows as a small marker).
    "full": all 39 numbers, with object poses and the goal position: privileged simulator state
        that no real robot has. Kept as a labelled comparison, never a default.
  The full state is always available as `Observation.privileged`, for the scripted expert only.
- The camera: corner2 moved to (0.75, 0.075, 0.7), as in LeRobot's Meta-World protocol, so the
  table fills the image (`env.camera_position`; empty keeps the scene's own, far-away placement).
- More cameras (`env.extra_cameras`, e.g. "gripperPOV" in the gripper) add one image each per step;
  `Observation.images` holds them all, scene camera first.
- Rendering goes through one `mujoco.Renderer` with shadows, reflections and the skybox off:
  about 8 ms a frame in software (EGL/llvmpipe) instead of 60-90 ms with Meta-World's defaults.
- The corner cameras render upside down; their images are rotated 180 degrees.
"""

from __future__ import annotations

import difflib
import os
import warnings

os.environ.setdefault("MUJOCO_GL", "egl")  # headless; must be set before mujoco is imported

import numpy as np  # noqa: E402

from minivla_core.actions import ACTION_DIM, HAND_STEP, check_action  # noqa: E402
from minivla_core.config import MAX_CAMERAS, EnvConfig, camera_names, state_dim_of  # noqa: E402
from minivla_core.envs.base import Observation, joint_angles  # noqa: E402
from minivla_core.errors import TaskError  # noqa: E402

# Paraphrased instructions per task. The first is the task's plain instruction; the last
# HELD_OUT ones never appear in training data and are used only in evaluation, so evaluation
# asks in word combinations the policy has not been trained on. The training ones share their
# small words ("it", "until", "by", "up", "out") across tasks, so that only the words naming
# the object and the motion tell tasks apart. Tasks not listed get one instruction made from
# their name.
INSTRUCTIONS = {
    "push-v3": ["push the puck to the goal", "slide the puck over to the target",
                "shove the puck until it reaches the goal", "nudge the puck onto the target",
                "push the puck along the table to the goal", "get the puck to the goal by sliding it",
                "keep the puck on the table and push it to the target", "slide the puck until it is on the goal",
                # held out:
                "move the puck to the target by pushing it", "push the small puck onto the goal spot"],
    "reach-v3": ["reach the goal position", "move the gripper to the target", "put the hand at the goal",
                 "move the hand until it is at the goal", "go to the target with the gripper",
                 "reach for the goal point", "take the gripper over to the goal",
                 "bring the hand up to the target by moving it there",
                 # held out:
                 "bring the gripper to the goal position", "reach out to the target point"],
    "pick-place-v3": ["pick up the puck and place it at the goal", "grab the puck and put it on the target",
                      "lift the puck and set it down at the goal", "pick the puck up and carry it to the target",
                      "grab the puck, lift it and drop it at the goal",
                      "take the puck off the table and put it at the target",
                      "place the puck at the goal by picking it up", "hold the puck and move it up to the target",
                      # held out:
                      "grasp the puck and place it at the target", "pick the puck up and put it at the goal position"],
    "drawer-open-v3": ["open the drawer", "pull the drawer open", "slide the drawer out",
                       "pull the drawer out until it is open", "get the drawer open by pulling on the handle",
                       "draw the drawer out toward the robot", "open up the drawer",
                       "pull on the drawer handle to open it",
                       # held out:
                       "pull out the drawer", "open the drawer by pulling it"],
    "button-press-topdown-v3": ["press the button from the top", "push the button down", "press down on the button",
                                "push the button until it clicks", "hit the button from the top",
                                "push on the red button", "press the button down with the gripper",
                                "move down and press the button",
                                # held out:
                                "push down on the button from above", "press the button"],
    "door-open-v3": ["open the door", "swing the door open", "pull the door open",
                     "pull the door handle until the door is open", "open the door by pulling its handle",
                     "swing the door out toward the robot", "get the door open", "pull on the door to open it",
                     # held out:
                     "pull the door until it opens", "open the door wide"],
}
HELD_OUT = 2

# Tasks whose camera images look alike: push, reach and pick-place all show a table, a puck and a
# goal, so only the instruction can tell the policy which of them to do. Every other task is a
# scene of its own (a drawer, a button, a door).
SHARED_SCENES = {"push-v3": "puck", "reach-v3": "puck", "pick-place-v3": "puck"}


UPSIDE_DOWN_CAMERAS = {"corner", "corner2", "corner3", "corner4"}


def task_names() -> list[str]:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return list(ALL_V3_ENVIRONMENTS)


def check_task(task: str) -> str:
    names = task_names()
    if task not in names:
        close = difflib.get_close_matches(task, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise TaskError(f"unknown Meta-World task {task!r}.{hint} Known tasks: {', '.join(names)}")
    return task


def paraphrases(task: str, held_out: bool = False) -> list[str]:
    """Training paraphrases of a task's instruction, or (held_out=True) the evaluation-only ones."""
    if task not in INSTRUCTIONS:
        return [] if held_out else [task.removesuffix("-v3").replace("-", " ")]
    return INSTRUCTIONS[task][-HELD_OUT:] if held_out else INSTRUCTIONS[task][:-HELD_OUT]


def scene_of(task: str) -> str:
    """Tasks with the same scene name look the same to the camera."""
    return SHARED_SCENES.get(task, task)


def instruction_for(task: str) -> str:
    """The task's plain instruction."""
    return paraphrases(task)[0]


def make_expert(task: str):
    """Meta-World's scripted expert for `task`: expert.get_action(state) -> action."""
    from metaworld.policies import ENV_POLICY_MAP

    # The experts warn when their raw output exceeds [-1, 1]; collection clips it, as the env does.
    warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
    return ENV_POLICY_MAP[check_task(task)]()


ARM_JOINTS = ("right_j0", "right_j1", "right_j2", "right_j3", "right_j4", "right_j5", "right_j6")


class MetaWorldEnv:
    def __init__(self, config: EnvConfig):
        # the simulator is imported here, not at the top: training imports this module (scene_of) on machines
        # without MuJoCo, a GPU server say
        import mujoco
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

        self.config = config
        self.task = check_task(config.task)
        self.instruction = instruction_for(self.task)
        self.arm_joint_names = ARM_JOINTS  # what arm_joints of each observation are
        self.hand_step = HAND_STEP  # metres the hand moves in one step for an action of 1
        self.state_dim = state_dim_of(config.observation)
        if config.image_size < 8:
            raise TaskError(f"image_size {config.image_size} is too small (at least 8 pixels)")
        if config.camera_position and len(config.camera_position) != 3:
            raise TaskError(f"env.camera_position must be 3 numbers (x, y, z) or empty, got {config.camera_position}")

        self._env = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{self.task}-goal-observable"](seed=config.seed)
        self._env._freeze_rand_vec = False  # a new layout on every reset ...
        self._env.seeded_rand_vec = True  # ... drawn from the env's own seeded generator
        self._env.max_path_length = config.max_episode_steps

        model = self._env.model
        cameras = [model.camera(i).name for i in range(model.ncam)]
        self.cameras = camera_names(config)
        for name in self.cameras:
            if name not in cameras:
                raise TaskError(f"unknown camera {name!r}; this scene has {', '.join(cameras)}")
        if len(set(self.cameras)) != len(self.cameras) or len(self.cameras) > MAX_CAMERAS:
            raise TaskError(f"cameras {self.cameras}: each camera once, at most {MAX_CAMERAS}")
        if config.camera_position:  # takes effect at the next mj_forward, which every reset runs
            model.cam_pos[cameras.index(config.camera)] = config.camera_position
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, config.image_size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, config.image_size)
        model.vis.quality.offsamples = 0  # no multisampling
        model.vis.quality.shadowsize = 0  # no shadow map
        self._renderer = mujoco.Renderer(model, config.image_size, config.image_size)
        self.forward_kinematics = mujoco.mj_forward
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                     mujoco.mjtRndFlag.mjRND_SKYBOX):
            self._renderer.scene.flags[flag] = 0
        self.episode = -1
        self.step_count = 0

    @property
    def action_dim(self) -> int:
        return ACTION_DIM

    def reset(self, episode: int | None = None) -> Observation:
        """Start an episode. Its layout depends only on (config.seed, episode)."""
        self.episode = self.episode + 1 if episode is None else episode
        layout_seed = np.random.SeedSequence([self.config.seed, self.episode]).generate_state(1)[0]
        self._env.seed(int(layout_seed))
        full_state, _ = self._env.reset()
        # Meta-World moves the goal marker (a site) after its last kinematics pass: without this the first
        # image of every episode would show the goal where it was before, not where the state says it is.
        self.forward_kinematics(self._env.model, self._env.data)
        self.step_count = 0
        return self._observe(full_state)

    def step(self, action: np.ndarray) -> Observation:
        action = check_action(action)
        if self.step_count >= self.config.max_episode_steps:
            raise RuntimeError("episode is over (max_episode_steps reached); call reset()")
        full_state, reward, _, _, info = self._env.step(action)
        self.step_count += 1
        return self._observe(full_state, float(reward), bool(info["success"]))

    def _observe(self, full_state: np.ndarray, reward: float = 0.0, success: bool = False) -> Observation:
        full_state = full_state.astype(np.float32)
        return Observation(self.render(), full_state[: self.state_dim].copy(), full_state, reward, success,
                           self.step_count, self._arm_joints())

    def _arm_joints(self) -> np.ndarray:
        """The Sawyer arm's joint angles (what a real arm's driver publishes; never the policy's state here)."""
        return joint_angles(self._env.model, self._env.data, ARM_JOINTS)

    @property
    def done(self) -> bool:
        return self.step_count >= self.config.max_episode_steps

    def render(self) -> np.ndarray:
        """(cameras, H, W, 3) uint8: one upright image per camera."""
        images = []
        for name in self.cameras:
            self._renderer.update_scene(self._env.data, camera=name)
            image = self._renderer.render()
            images.append(image[::-1, ::-1] if name in UPSIDE_DOWN_CAMERAS else image)
        return np.stack(images)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
