"""ROS tests: real rclpy nodes over real DDS, on loopback, in a domain of their own."""

import os
import random
import tempfile

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
os.environ.setdefault("ROS_HOME", tempfile.mkdtemp(prefix="minivla-test-ros-home-"))

import rclpy  # noqa: E402


@pytest.fixture(scope="module")
def ros():
    """rclpy initialised for this test module."""
    rclpy.init()
    yield
    rclpy.try_shutdown()
