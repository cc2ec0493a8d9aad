"""A second robot that is not Meta-World's, and has no gripper, for the tests: a planar two-joint arm reaching for a
red dot, simulated in plain numpy, with a scripted expert and bags of its own written by an independent writer.

Decided here:
- The arm: two links (LINKS) turning about z at its base, the tip at height TIP_Z. It takes the tip's velocity in its
  own frame (FRAME, a TwistStamped's linear x, y; z is 0) and follows it through damped least squares on the
  Jacobian, stepping at PHYSICS_RATE. No gripper: a command is the twist's 3 numbers.
- What it offers, each on the topic config/planar_arm.yaml names (that file is the one place for them): a jpeg
  CompressedImage at 10 Hz (160 x 120, drawn with OpenCV: the links, the base, the red dot), the tip as a
  PoseStamped and its joints as a JointState at 50 Hz, listed elbow, wrist_roll, shoulder (another order than the
  state's, and a joint the policy does not use), a std_msgs/Header at each episode's start and a std_msgs/Bool at
  its end (reached the dot or not).
- The expert: the tip's velocity towards the dot, proportional to the distance, at most EXPERT_SPEED; zero once
  within REACHED of it.
- Bags (write_bags): rosbag2 folders written by the `rosbags` library's Writer (sqlite3, its default), each message
  built from rosbags' own typestore and serialised by it: neither this package's recorder nor its conversions.
  The camera's stamps jitter by up to 15 ms and one frame in 20 is dropped, as a real driver's do; commands come at
  20 Hz, each from the state it was computed from.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "planar_arm.yaml"
LINKS = (0.30, 0.25)  # metres, shoulder to elbow and elbow to tip
TIP_Z = 0.1  # metres above the table
FRAME = "planar_base"  # the arm's own frame (robot.action_frame in the YAML)
JOINT_ORDER = ["elbow", "wrist_roll", "shoulder"]  # as its driver lists them
PHYSICS_RATE = 50.0  # steps a second; also the joint state and pose rate
CAMERA_RATE = 10.0
COMMAND_RATE = 20.0
IMAGE_SIZE = (120, 160)  # height, width
VIEW = 0.6  # the camera's centre square shows x, y in [-VIEW, VIEW]
EXPERT_GAIN = 2.0  # 1/s
EXPERT_SPEED = 0.15  # m/s
REACHED = 0.01  # metres
T0 = 1_700_000_000.0  # the bags' clock (seconds)


def robot_config():
    """The robot and bag2data sections of config/planar_arm.yaml."""
    from minivla_core.config import load_config

    return load_config(CONFIG)


class PlanarArm:
    """Two joints (shoulder, elbow), a tip velocity in, a tip position, joints and a camera image out."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.joints = np.zeros(2)
        self.target = np.zeros(2)
        self.velocity = np.zeros(3)  # the command in force, m/s in FRAME
        self.reset()

    def reset(self) -> None:
        """A new episode: the arm somewhere in front of its base, elbow bent, and a dot 8 to 25 cm from the tip."""
        self.joints = np.array([self.rng.uniform(0.4, 2.0), self.rng.uniform(0.8, 1.8)])
        self.velocity = np.zeros(3)
        while True:
            target = self.tip()[:2] + self.rng.uniform(-0.25, 0.25, 2)
            if 0.15 < np.linalg.norm(target) < 0.5 and target[1] > 0.0 and \
                    0.08 < np.linalg.norm(target - self.tip()[:2]) < 0.25:
                self.target = target
                return

    def elbow(self) -> np.ndarray:
        return LINKS[0] * np.array([np.cos(self.joints[0]), np.sin(self.joints[0])])

    def tip(self) -> np.ndarray:
        angle = self.joints.sum()
        return np.array([*(self.elbow() + LINKS[1] * np.array([np.cos(angle), np.sin(angle)])), TIP_Z])

    def jacobian(self) -> np.ndarray:
        q1, q12 = self.joints[0], self.joints.sum()
        return np.array([[-LINKS[0] * np.sin(q1) - LINKS[1] * np.sin(q12), -LINKS[1] * np.sin(q12)],
                         [LINKS[0] * np.cos(q1) + LINKS[1] * np.cos(q12), LINKS[1] * np.cos(q12)]])

    def step(self, dt: float = 1.0 / PHYSICS_RATE) -> None:
        """The joints move for dt so that the tip follows the command in force (damped least squares)."""
        jac = self.jacobian()
        rates = jac.T @ np.linalg.solve(jac @ jac.T + 0.05 ** 2 * np.eye(2), self.velocity[:2])
        self.joints = self.joints + rates * dt

    def joint_positions(self) -> list[float]:
        """In the driver's order, JOINT_ORDER (wrist_roll, which the policy does not use, stays at 0.3)."""
        return [float(self.joints[1]), 0.3, float(self.joints[0])]

    def image(self) -> np.ndarray:
        """RGB (IMAGE_SIZE): the centre square shows the table from above, the dot red, the links blue and green."""
        height, width = IMAGE_SIZE
        picture = np.full((height, width, 3), 200, np.uint8)

        def pixel(point) -> tuple[int, int]:
            scale = height / (2 * VIEW)
            return (int(round(width / 2 + point[0] * scale)), int(round(height / 2 - point[1] * scale)))

        cv2.circle(picture, pixel(self.target), 5, (230, 30, 30), -1)
        cv2.line(picture, pixel((0.0, 0.0)), pixel(self.elbow()), (40, 60, 220), 4)
        cv2.line(picture, pixel(self.elbow()), pixel(self.tip()), (30, 170, 60), 3)
        cv2.circle(picture, pixel((0.0, 0.0)), 6, (40, 40, 40), -1)
        return picture

    def expert_velocity(self) -> np.ndarray:
        """Towards the dot, proportional to the distance, at most EXPERT_SPEED; zero once within REACHED."""
        error = self.target - self.tip()[:2]
        if np.linalg.norm(error) < REACHED:
            return np.zeros(3)
        velocity = EXPERT_GAIN * error
        speed = np.linalg.norm(velocity)
        if speed > EXPERT_SPEED:
            velocity *= EXPERT_SPEED / speed
        return np.array([*velocity, 0.0])

    def reached(self) -> bool:
        return bool(np.linalg.norm(self.target - self.tip()[:2]) < REACHED)


# --- bags, written without this package ----------------------------------------------------------------------
TYPES = {"camera": "sensor_msgs/msg/CompressedImage", "pose": "geometry_msgs/msg/PoseStamped",
         "joints": "sensor_msgs/msg/JointState", "command": "geometry_msgs/msg/TwistStamped",
         "episode": "std_msgs/msg/Header", "result": "std_msgs/msg/Bool"}


class BagMessages:
    """The arm's messages as rosbags' own message classes (from its Jazzy typestore), serialised to CDR."""

    def __init__(self):
        from rosbags.typesys import Stores, get_typestore

        self.store = get_typestore(Stores.ROS2_JAZZY)
        self.types = self.store.types

    def header(self, t: float, frame_id: str = FRAME):
        ns = int(round((T0 + t) * 1e9))
        time = self.types["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        return self.types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def vector(self, values):
        return self.types["geometry_msgs/msg/Vector3"](*(float(v) for v in values))

    def camera(self, t: float, arm: PlanarArm):
        ok, jpeg = cv2.imencode(".jpg", arm.image()[..., ::-1])
        assert ok
        return self.types[TYPES["camera"]](header=self.header(t, "planar_camera"), format="jpeg",
                                           data=np.frombuffer(jpeg.tobytes(), np.uint8))

    def pose(self, t: float, arm: PlanarArm):
        point = self.types["geometry_msgs/msg/Point"](*(float(v) for v in arm.tip()))
        orientation = self.types["geometry_msgs/msg/Quaternion"](0.0, 0.0, 0.0, 1.0)
        return self.types[TYPES["pose"]](header=self.header(t),
                                         pose=self.types["geometry_msgs/msg/Pose"](point, orientation))

    def joints(self, t: float, arm: PlanarArm):
        empty = np.zeros(0, np.float64)
        return self.types[TYPES["joints"]](header=self.header(t, ""), name=list(JOINT_ORDER),
                                           position=np.array(arm.joint_positions()), velocity=empty, effort=empty)

    def command(self, t: float, velocity):
        twist = self.types["geometry_msgs/msg/Twist"](self.vector(velocity), self.vector((0.0, 0.0, 0.0)))
        return self.types[TYPES["command"]](header=self.header(t), twist=twist)

    def episode(self, t: float):
        return self.header(t, "")

    def result(self, reached: bool):
        return self.types[TYPES["result"]](data=reached)

    def serialize(self, msg, role: str) -> bytes:
        return self.store.serialize_cdr(msg, TYPES[role])


def demonstration(arm: PlanarArm, start: float, rng: np.random.Generator, messages: BagMessages,
                  seconds: float = 4.0) -> list[tuple[float, str, object]]:
    """One expert episode from `start` (seconds on the bags' clock): (log time, role, message) events. The expert
    reaches the dot, then commands zero for 0.5 s more; the episode ends there or after `seconds`, with its result."""
    arm.reset()
    events = [(start, "episode", messages.episode(start))]
    next_frame, step, done_at = start + 0.01, 0, None
    while True:
        t = start + 0.01 + step / PHYSICS_RATE
        if step % int(PHYSICS_RATE / COMMAND_RATE) == 0:
            arm.velocity = arm.expert_velocity()
            events.append((t + 0.004, "command", messages.command(t, arm.velocity)))
        events.append((t + 0.002, "pose", messages.pose(t, arm)))
        events.append((t + 0.002, "joints", messages.joints(t, arm)))
        if t >= next_frame:
            stamp = t + rng.uniform(-0.015, 0.015)
            if rng.random() > 0.05:  # one frame in 20 never arrives
                events.append((stamp + 0.02, "camera", messages.camera(stamp, arm)))
            next_frame += 1.0 / CAMERA_RATE
        if done_at is None and arm.reached():
            done_at = t
        if (done_at is not None and t - done_at >= 0.5) or t - start >= seconds:
            return events + [(t + 0.05, "result", messages.result(arm.reached()))]
        arm.step()
        step += 1


def write_bags(folder: Path, bags: int = 2, episodes: int = 5, seed: int = 0) -> list[Path]:
    """`bags` rosbag2 folders under `folder`, each with `episodes` expert demonstrations 0.5 s apart."""
    from rosbags.rosbag2 import Writer

    robot = robot_config().robot
    topics = {"camera": robot.camera_topics[0], "pose": robot.state_pose_topic, "joints": robot.state_joint_topic,
              "command": robot.action_topic, "episode": robot.episode_topic,
              "result": robot_config().bag2data.success_topic}
    messages, rng, arm = BagMessages(), np.random.default_rng(seed), PlanarArm(seed)
    paths = []
    for index in range(bags):
        events, start = [], 0.0
        for _ in range(episodes):
            events += demonstration(arm, start, rng, messages)
            start = events[-1][0] + 0.5
        path = folder / f"planar{index}"
        with Writer(path, version=9) as writer:
            connections = {role: writer.add_connection(topic, TYPES[role], typestore=messages.store)
                           for role, topic in topics.items()}
            for t, role, msg in sorted(events, key=lambda event: event[0]):
                writer.write(connections[role], int(round((T0 + t) * 1e9)), messages.serialize(msg, role))
        paths.append(path)
    return paths


if __name__ == "__main__":  # the walk-through's bags: .venv/bin/python test/planar_arm.py bags [--bags 2 --episodes 5]
    import argparse

    parser = argparse.ArgumentParser(description="Write planar-arm demonstration bags with the rosbags library's "
                                                 "writer (docs/robot.md, 'A robot with no gripper').")
    parser.add_argument("folder", type=Path, help="where the bag folders planar0, planar1, ... go (must not hold them)")
    parser.add_argument("--bags", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=5, help="demonstrations per bag")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    for path in write_bags(args.folder, args.bags, args.episodes, args.seed):
        print(f"wrote {path}")
