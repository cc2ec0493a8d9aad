"""The robot interface's standard messages, both ways: what conversions.py writes, images.py and
interfaces.py read back (the policy node and bag2data read with the same functions)."""

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from minivla_core.config import RobotConfig
from minivla_ros.conversions import command_msgs, compressed_image_to_msg, joint_state_to_msg, pose_to_msg
from minivla_ros.images import fit_image, image_from_msg
from minivla_ros.interfaces import (
    assemble_state, check_interface, gripper_from_msg, joint_positions, motion_from_msg, position_from_pose,
    state_size)

STAMP = Time(sec=12, nanosec=345)


def picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colours (JPEG keeps them close) with a sharp corner mark (crop and orientation show)."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([255 * x / width, 255 * y / height, 128 + 60 * np.sin((x + y + seed) / 9)], axis=2)
    image = image.astype(np.uint8)
    image[:height // 8, :width // 8] = (255, 0, 0)
    return image


def image_msg(rgb: np.ndarray, encoding: str, padding: int = 0) -> Image:
    """An Image message in `encoding`, rows padded by `padding` bytes, written without our own code."""
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
              "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
              "mono8": rgb[..., :1]}[encoding]
    height, width, channels = pixels.shape
    rows = np.concatenate([pixels.reshape(height, width * channels),
                           np.full((height, padding), 99, np.uint8)], axis=1)
    return Image(height=height, width=width, encoding=encoding, step=width * channels + padding,
                 data=rows.tobytes())


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_every_image_encoding_reads_back_as_the_same_rgb_picture(encoding):
    rgb = picture(32, 32)
    expected = np.repeat(rgb[..., :1], 3, axis=2) if encoding == "mono8" else rgb
    for padding in (0, 5):
        np.testing.assert_array_equal(image_from_msg(image_msg(rgb, encoding, padding), 32), expected)


def test_a_camera_of_any_size_gives_its_centre_square_at_the_checkpoint_size():
    """640x480 -> the middle 480x480 (the red corner mark is cut off) -> 64x64; smaller images grow."""
    rgb = picture(480, 640)
    image = image_from_msg(image_msg(rgb, "bgr8"), 64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    expected = cv2.resize(rgb[:, 80:560], (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(image, expected)
    assert not (image[:4, :4] == (255, 0, 0)).all()  # the mark lay in the columns cut away
    tall = picture(100, 40)
    assert fit_image(tall, 64).shape == (64, 64, 3)
    np.testing.assert_array_equal(fit_image(rgb[:64, :64], 64), rgb[:64, :64])  # the right size passes unchanged


def test_compressed_images_read_back():
    rgb = picture(48, 64)
    png = compressed_image_to_msg(rgb, STAMP, format="png")
    assert png.format == "png" and png.header.stamp == STAMP
    np.testing.assert_array_equal(image_from_msg(png, 48), rgb[:, 8:56])
    jpeg = compressed_image_to_msg(rgb, STAMP)
    decoded = image_from_msg(jpeg, 48).astype(int)
    assert np.abs(decoded - rgb[:, 8:56]).mean() < 4  # lossy, but the same picture, the right way round
    jpeg.format = "rgb8; jpeg compressed bgr8"  # image_transport's way of saying it
    assert image_from_msg(jpeg, 48).shape == (48, 48, 3)


@pytest.mark.parametrize("change, message", [
    (dict(encoding="yuv422"), "encoding 'yuv422' is not supported"),
    (dict(step=10), "shorter than a row"),
    (dict(height=5000, width=5000), "more than"),
    (dict(data=b"\x00" * 10), "bytes of data"),
])
def test_bad_image_headers_are_named(change, message):
    msg = image_msg(picture(8, 8), "rgb8")
    for name, value in change.items():
        setattr(msg, name, value)
    with pytest.raises(ValueError, match=message):
        image_from_msg(msg, 8)


def test_bad_compressed_images_are_named():
    msg = compressed_image_to_msg(picture(8, 8), STAMP, format="png")
    msg.format = "tiff"
    with pytest.raises(ValueError, match="format 'tiff' is not supported"):
        image_from_msg(msg, 8)
    msg.format, msg.data = "jpeg", b"not a jpeg at all"
    with pytest.raises(ValueError, match="could not be decoded"):
        image_from_msg(msg, 8)


def test_state_from_a_pose_and_named_joints_in_any_order():
    robot = RobotConfig(state_pose_topic="ee_pose", state_joint_topic="joint_states", state_joints=["gripper", "wrist"])
    pose = pose_to_msg([0.1, -0.2, 0.3], STAMP)
    joints = joint_state_to_msg(["wrist", "elbow", "gripper"], [0.5, 1.5, 0.9], STAMP)
    state = assemble_state(robot, position_from_pose(pose), joint_positions(joints, robot.state_joints))
    np.testing.assert_allclose(state, [0.1, -0.2, 0.3, 0.9, 0.5], rtol=1e-6)
    assert state_size(robot) == 5 and state.dtype == np.float32
    joints_only = RobotConfig(state_pose_topic="", state_joints=["elbow"])
    np.testing.assert_allclose(assemble_state(joints_only, None, joint_positions(joints, ["elbow"])), [1.5])


def test_state_problems_are_named():
    with pytest.raises(ValueError, match="lacks joint.s. gripper \\(it has wrist, elbow\\)"):
        joint_positions(joint_state_to_msg(["wrist", "elbow"], [0.0, 0.0], STAMP), ["gripper"])
    with pytest.raises(ValueError, match="names 2 joints but gives 1 positions"):
        joint_positions(JointState(name=["a", "b"], position=[0.0]), ["a"])
    with pytest.raises(ValueError, match="NaN or infinite"):
        position_from_pose(pose_to_msg([0.0, float("nan"), 0.0], STAMP))


STANDARD = dict(state_type="PoseAndJoints", action_type="TwistStamped")
ROBOTS = {
    "twist + gripper": RobotConfig(action_type="TwistStamped", velocity_scale=0.25, action_frame="base_link"),
    "trajectory + gripper": RobotConfig(action_type="JointTrajectory", action_joints=["j1", "j2", "j3"]),
    "trajectory with the gripper joint": RobotConfig(action_type="JointTrajectory", gripper_topic="",
                                                     action_joints=["j1", "j2", "j3", "finger"]),
    "array + gripper": RobotConfig(action_type="Float64MultiArray"),
    "array with the gripper": RobotConfig(action_type="Float64MultiArray", gripper_topic=""),
}


@pytest.mark.parametrize("name", list(ROBOTS))
def test_every_command_type_carries_the_action_both_ways(name):
    robot = ROBOTS[name]
    check_interface(robot, action_dim=4)
    action = np.array([0.5, -1.0, 0.25, 1.0])
    msgs = command_msgs(action, robot, STAMP, period=0.05)
    assert len(msgs) == (2 if robot.gripper_topic else 1)
    motion = motion_from_msg(msgs[0], robot)
    read = np.append(motion, gripper_from_msg(msgs[1])) if robot.gripper_topic else motion
    np.testing.assert_allclose(read, action, rtol=1e-9)
    if robot.action_type == "TwistStamped":
        assert msgs[0].header.frame_id == "base_link" and msgs[0].twist.linear.x == pytest.approx(0.125)
    if robot.action_type == "JointTrajectory":
        assert msgs[0].points[0].time_from_start.nanosec == 50_000_000


def test_a_robot_with_no_gripper_takes_actions_of_its_commands_own_size():
    """A TwistStamped and no gripper topic: 3-number actions, one message each, read back whole; a 4-number policy
    does not fit it, nor a 3-number policy the simulated arms' own ActionCommand (issue 23)."""
    from minivla_ros.interfaces import action_size, has_gripper

    robot = RobotConfig(**STANDARD, gripper_topic="", action_frame="planar_base")
    assert (action_size(robot), has_gripper(robot)) == (3, False)
    assert (action_size(RobotConfig(**STANDARD)), has_gripper(RobotConfig(**STANDARD))) == (4, True)
    check_interface(robot, action_dim=3, state_dim=4, cameras=1)
    action = np.array([0.5, -1.0, 0.0])
    (msg,) = command_msgs(action, robot, STAMP, period=0.05)
    assert msg.header.frame_id == "planar_base"
    np.testing.assert_allclose(motion_from_msg(msg, robot), action, rtol=1e-9)
    with pytest.raises(ValueError, match="policy's action has 4 .*a robot with no gripper takes actions of 3"):
        check_interface(robot, action_dim=4)
    with pytest.raises(ValueError, match="ActionCommand commands the simulated arms.*the policy's action has 3"):
        check_interface(RobotConfig(), action_dim=3)
    with pytest.raises(ValueError, match="TwistStamped command carries 3 numbers .x, y, z., got 4"):
        command_msgs(np.zeros(4), robot, STAMP, period=0.05)


def test_commands_a_policy_cannot_follow_are_named():
    robot = RobotConfig(action_type="JointTrajectory", action_joints=["j1", "j2", "j3"])
    trajectory = JointTrajectory(joint_names=["j1", "j3"], points=[JointTrajectoryPoint(positions=[0.0, 0.0])])
    with pytest.raises(ValueError, match="lacks joint.s. j2"):
        motion_from_msg(trajectory, robot)
    with pytest.raises(ValueError, match="has no points"):
        motion_from_msg(JointTrajectory(joint_names=["j1", "j2", "j3"]), robot)
    twist = command_msgs(np.zeros(4), RobotConfig(**STANDARD), STAMP, 0.05)[0]
    twist.twist.angular.z = 0.3
    with pytest.raises(ValueError, match="angular velocity"):
        motion_from_msg(twist, RobotConfig(**STANDARD))


@pytest.mark.parametrize("change, message", [
    (dict(action_type="Pose"), "action_type 'Pose' is not one of"),
    (dict(state_type="Odometry"), "state_type 'Odometry' is not one of"),
    (dict(camera_topics=["a", "b"]), "names 2 topics, but the policy sees 1 camera"),
    (dict(gripper_topic=""), "TwistStamped command carries 3 numbers"),
    (dict(velocity_scale=0.0), "velocity_scale must be > 0"),
    (dict(action_type="JointTrajectory", action_joints=["j1"]), "names 1 joints, but 3 action numbers"),
    (dict(state_joints=[]), "state_joints names no joint"),
    (dict(state_pose_topic="", state_joint_topic=""), "both empty: no state"),
    (dict(state_pose_topic="", state_joints=["a", "b", "c"]), "state of 3 numbers .* but the policy expects 4"),
])
def test_an_interface_that_cannot_work_is_named(change, message):
    with pytest.raises(ValueError, match=message):
        check_interface(RobotConfig(**{**STANDARD, **change}), action_dim=4, state_dim=4, cameras=1)


def test_the_simulators_interfaces_both_fit_a_proprio_checkpoint():
    check_interface(RobotConfig(), action_dim=4, state_dim=4, cameras=1)  # ours: RobotState, ActionCommand
    check_interface(RobotConfig(**STANDARD), action_dim=4, state_dim=4, cameras=1)  # pose x, y, z + gripper


def test_timed_chunks_and_stamps_convert_both_ways():
    from minivla_ros.conversions import chunk_from_msg, chunk_to_msg, stamp_from_seconds, stamp_to_seconds

    stamp = stamp_from_seconds(12.9999999999)  # rounds up to the next second: nanosec must not reach 1e9
    assert (stamp.sec, stamp.nanosec) == (13, 0)
    assert stamp_to_seconds(stamp_from_seconds(1_700_000_000.25)) == 1_700_000_000.25
    actions = np.array([[0.1 * i, -0.1, 0.0, 1.0] for i in range(8)], dtype=np.float32)
    msg = chunk_to_msg(actions, 5.05, 0.05, episode=3, observation_stamp=stamp_from_seconds(5.0), chunk=2, frozen=1)
    first_due, back = chunk_from_msg(msg, action_dim=4)
    assert first_due == pytest.approx(5.05) and (msg.episode, msg.chunk, msg.frozen) == (3, 2, 1)
    np.testing.assert_array_equal(back, actions)
    with pytest.raises(ValueError, match="rows of 4"):
        chunk_from_msg(msg, action_dim=3)
    msg.actions[0] = 1.5
    with pytest.raises(ValueError):
        chunk_from_msg(msg, action_dim=4)
