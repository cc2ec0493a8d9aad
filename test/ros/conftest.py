"""ROS tests: real rclpy nodes over real DDS, on loopback only, in a domain no other run holds."""

import os
import subprocess
from pathlib import Path

import pytest

from minivla_ros import bringup

os.environ.update(bringup.ros_environment())  # before rclpy starts any participant

import rclpy  # noqa: E402


@pytest.fixture(scope="module")
def ros():
    """rclpy initialised for this test module."""
    rclpy.init()
    yield
    rclpy.try_shutdown()


@pytest.fixture
def node_process(tmp_path, ros):
    """Start nodes as `minivla run` does, output to a log file each: yields
    start(node, **overrides) -> (process, function returning the log so far); stops them all after."""
    started = []

    def start(node, **overrides):
        log = open(tmp_path / f"{node}{len(started)}.log", "w+")
        process = subprocess.Popen(bringup.node_command(node, bringup.DEFAULT_PARAMS, overrides), stdout=log,
                                   stderr=subprocess.STDOUT, env=bringup.ros_environment(), cwd=bringup.ROOT)
        started.append((process, log))
        return process, lambda: Path(log.name).read_text()

    yield start
    bringup.stop_processes([p for p, _ in started])
    for _, log in started:
        log.close()
