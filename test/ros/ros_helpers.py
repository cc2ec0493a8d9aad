"""Helpers for the ROS tests (a plain module: fixtures live in conftest.py)."""

import time

import rclpy


def spin_for(node, seconds, every=None):
    """Spin `node` for `seconds`, calling `every()` (e.g. publish) between spins."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if every:
            every()
        rclpy.spin_once(node, timeout_sec=0.05)


def wait_until(node, condition, timeout, every=None) -> bool:
    """Spin `node` until `condition()` holds or `timeout` seconds pass; returns whether it held."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        if every:
            every()
        rclpy.spin_once(node, timeout_sec=0.05)
    return condition()
