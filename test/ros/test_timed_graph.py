"""Timed execution through ROS (bridge.timing and policy_node.timing timed): the policy publishes whole chunks
with due times, sampled ahead; the bridge executes them on its own 20 Hz clock. Real nodes, real DDS.

What depends on scheduling (held steps, late actions, success under a delay) is not asserted here: a loaded
machine changes it. The simulated clock measures it deterministically (test/test_timed.py) and bench/bench_graph.py
measures the graph."""

import pytest

from minivla_core.errors import ConfigError
from minivla_ros import bringup

TIMED = {"bridge.timing": "timed", "policy_node.timing": "timed"}


def test_timed_graph_executes_chunks_on_the_robots_clock():
    result = bringup.run(2, "push-v3", "push the puck to the goal", overrides=TIMED)
    counts = result.executor
    steps = [e["steps"] for e in result.episodes]
    assert len(steps) == 2 and all(s >= 1 for s in steps)  # both episodes ran and ended
    assert 1 <= counts["applied"] <= sum(steps)  # chunks were executed, never more than one action a step


def test_a_policy_planning_for_another_rate_is_refused_before_the_graph_starts():
    with pytest.raises(ConfigError, match="must equal bridge.step_rate"):
        bringup.run(1, "push-v3", "push the puck to the goal", overrides={**TIMED, "policy_node.control_rate": 10.0})
