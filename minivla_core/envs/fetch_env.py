"""The second robot: Fetch pushing a block (gymnasium-robotics FetchPush-v4), behind the same small
interface as MetaWorldEnv: reset(episode) -> Observation, step(action) -> Observation.

It exists to show that nothing in the pipeline is Meta-World's: another arm (Fetch's 7-joint arm, with
two fingers), another scene, another camera, and on the ROS side (minivla_ros, later) only standard
messages. What this wrapper decides:
- Layouts: episode `i` of a run with seed `S` gets the block and goal layout of (S, i), as in
  MetaWorldEnv (gymnasium's reset(seed=...) with a seed drawn from (S, i)).
- The policy's state is what the arm knows about itself: the gripper's position x, y, z and its
  opening (the two fingers' widths, 0 closed .. 1 open), 4 numbers like Meta-World's proprio. The
  block and the goal (a red marker) reach the policy only through the camera. The full observation
  (25 numbers with the block's pose) and the goal are `privileged`, for the scripted expert only.
- The camera: a fixed view of the work area from the table's side (across the arm's reach), 50 degrees
  down, from 1 m with a narrow 25 degree field of view, so the 30 cm square where blocks and goals appear
  fills the image and the arm, seen in profile, hides little of it. (A first view from across the table
  looked at the arm head-on: its wrist hid the block or the goal in about half of the start layouts, and a
  policy trained on it reached 13% offline: see docs/robot.md.)
- An action is 4 numbers in [-1, 1]: gripper motion x, y, z (1.25 cm per step for 1: a quarter of
  gymnasium's 5 cm, `action_scale`) and the fingers (1 opens, -1 closes). max_episode_steps defaults
  to 200 here (gymnasium's 50 at 5 cm a step; the expert needs 48 on average at 1.25 cm).
- The scripted expert (FetchPushExpert) has no state: it reads the gripper, block and goal each step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering, before mujoco is imported

import mujoco  # noqa: E402

from minivla_core.actions import check_action  # noqa: E402
from minivla_core.envs.base import Observation, joint_angles  # noqa: E402

TASK = "fetch-push"
INSTRUCTION = "push the block to the red goal"
ARM_JOINTS = ("robot0:shoulder_pan_joint", "robot0:shoulder_lift_joint", "robot0:upperarm_roll_joint",
              "robot0:elbow_flex_joint", "robot0:forearm_roll_joint", "robot0:wrist_flex_joint",
              "robot0:wrist_roll_joint")
FINGERS = ("robot0:r_gripper_finger_joint", "robot0:l_gripper_finger_joint")
FINGER_TRAVEL = 0.05  # metres each finger opens
GYM_HAND_STEP = 0.05  # metres gymnasium-robotics' Fetch moves its gripper target per step for an action of 1


@dataclass
class FetchConfig:
    image_size: int = 96
    max_episode_steps: int = 200
    # An action of 1 moves the gripper's target action_scale * 5 cm per step: a quarter, 1.25 cm, as Meta-World's 1 cm.
    # With gymnasium's full 5 cm an episode is ~19 big steps, a 100-demo dataset ~2,000 samples, and policies
    # trained on it reached 12-35% (see docs/robot.md); finer steps give smooth, dense demos.
    action_scale: float = 0.25
    seed: int = 0
    camera_distance: float = 1.0  # metres from the point looked at
    camera_azimuth: float = 90.0  # degrees: from the table's side, the arm seen in profile
    camera_elevation: float = -50.0  # degrees: looking down
    camera_fovy: float = 25.0  # degrees of vertical field of view: about 44 cm of table at 1 m
    camera_lookat: tuple[float, float, float] = (1.345, 0.75, 0.42)  # the work area's centre, at the table top


class FetchEnv:
    def __init__(self, config: FetchConfig):
        import gymnasium as gym
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)
        self.config = config
        self.task, self.instruction, self.cameras = TASK, INSTRUCTION, ["table"]
        self.state_dim = 4
        self.arm_joint_names, self.hand_step = ARM_JOINTS, GYM_HAND_STEP * config.action_scale
        self._env = gym.make("FetchPush-v4", max_episode_steps=config.max_episode_steps).unwrapped
        model = self._env.model
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, config.image_size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, config.image_size)
        model.vis.global_.fovy = config.camera_fovy  # the field of view of free cameras (ours)
        self._renderer = mujoco.Renderer(model, config.image_size, config.image_size)
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                     mujoco.mjtRndFlag.mjRND_SKYBOX):
            self._renderer.scene.flags[flag] = 0
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self._camera.distance, self._camera.azimuth = config.camera_distance, config.camera_azimuth
        self._camera.elevation, self._camera.lookat[:] = config.camera_elevation, config.camera_lookat
        self.episode, self.step_count = -1, 0

    @property
    def action_dim(self) -> int:
        return 4

    def reset(self, episode: int | None = None) -> Observation:
        """Start an episode. Its layout depends only on (config.seed, episode)."""
        self.episode = self.episode + 1 if episode is None else episode
        layout_seed = np.random.SeedSequence([self.config.seed, self.episode]).generate_state(1)[0]
        obs, _ = self._env.reset(seed=int(layout_seed))
        self.step_count = 0
        return self._observe(obs)

    def step(self, action: np.ndarray) -> Observation:
        action = check_action(action)
        if self.step_count >= self.config.max_episode_steps:
            raise RuntimeError("episode is over (max_episode_steps reached); call reset()")
        motion = np.append(action[:3] * self.config.action_scale, action[3])
        obs, reward, _, _, info = self._env.step(motion)
        self.step_count += 1
        return self._observe(obs, float(reward), bool(info["is_success"]))

    def _observe(self, obs: dict, reward: float = 0.0, success: bool = False) -> Observation:
        full = obs["observation"].astype(np.float32)
        opening = (full[9] + full[10]) / (2 * FINGER_TRAVEL)
        state = np.array([*full[:3], opening], dtype=np.float32)
        privileged = np.concatenate([full, obs["desired_goal"].astype(np.float32)])
        return Observation(self.render(), state, privileged, reward, success, self.step_count, self._arm_joints())

    def _arm_joints(self) -> np.ndarray:
        return joint_angles(self._env.model, self._env.data, ARM_JOINTS)

    @property
    def done(self) -> bool:
        return self.step_count >= self.config.max_episode_steps

    def render(self) -> np.ndarray:
        """(1, H, W, 3) uint8: the table camera's image."""
        self._env._render_callback()  # puts the red goal marker where the goal is (gymnasium does so in render())
        self._renderer.update_scene(self._env.data, camera=self._camera)
        return self._renderer.render()[None].copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FetchPushExpert:
    """Scripted pusher: get behind the block on its line to the goal, then push through it to the goal.
    Reads only `privileged` (gripper, block, goal) each step; 60 of 60 unseen layouts in 48 steps on average."""

    def __init__(self, gain: float = 40.0):
        self.gain = gain  # action per metre from the target (full speed beyond 1 / gain metres)

    def get_action(self, privileged: np.ndarray) -> np.ndarray:
        grip, block, goal = privileged[0:3], privileged[3:6], privileged[-3:]
        to_goal = goal[:2] - block[:2]
        unit = to_goal / max(float(np.linalg.norm(to_goal)), 1e-6)
        offset = grip[:2] - block[:2]
        along, across = offset @ unit, abs(offset[0] * unit[1] - offset[1] * unit[0])
        behind = np.array([*(block[:2] - unit * 0.05), block[2]])
        low = grip[2] < block[2] + 0.02
        if low and along < -0.02 and across < 0.02:  # behind the block, on its line to the goal: push
            target = np.array([*(goal[:2] - unit * 0.02), block[2]])
        elif np.linalg.norm(grip[:2] - behind[:2]) < 0.015:  # above the spot behind it: go down
            target = behind
        elif grip[2] < block[2] + 0.04:  # low anywhere else: up first, never sweep through the block
            target = np.array([grip[0], grip[1], block[2] + 0.06])
        else:
            target = behind + np.array([0.0, 0.0, 0.06])
        return np.append(np.clip((target - grip) * self.gain, -1.0, 1.0), -1.0).astype(np.float32)
