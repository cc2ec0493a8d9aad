"""The three timing modes: how a policy and a robot share time. One module owns their names and the rules that
make a robot side (the simulator bridge, or a real robot's driver) and a policy side (the policy node) agree.

    free      each side on its own clock: the robot steps at its step rate and applies the newest command; the
              policy publishes one command per tick of its control rate, from the newest inputs.
    lockstep  the simulator's synchronous mode: the robot steps when a command answers its newest observation
              (the command's stamp names it); the policy answers each observation. `control_rate` is not used.
              Through ROS an episode then plays as `minivla eval` plays it.
    timed     a real robot's clock with a policy that may be slower than a step: the policy publishes whole
              chunks, each action with its due time one control period apart; the robot executes them on its
              clock (minivla_core/timed.py). The period the policy plans for must be the robot's step period.

The policy-side drivers are in minivla_core/drivers.py, the robot-side ones in minivla_core/stepping.py.
"""

from __future__ import annotations

from minivla_core.errors import ConfigError

TIMINGS = {
    "free": "each node on its own clock, the newest command applied",
    "lockstep": "the simulator steps when the policy answers its observation",
    "timed": "whole chunks with due times, executed on the robot's clock",
}


def check_timing(timing: str, where: str) -> str:
    """`timing` if it names a mode; else a ConfigError that names `where` and the choices."""
    if timing not in TIMINGS:
        choices = "; ".join(f"'{name}' ({what})" for name, what in TIMINGS.items())
        raise ConfigError(f"{where} must be one of: {choices}; got {timing!r}")
    return timing


def check_agreement(bridge_timing: str, step_rate: float, policy_timing: str, control_rate: float) -> None:
    """ConfigError unless a robot side with (bridge.timing, bridge.step_rate) and a policy side with
    (policy_node.timing, policy_node.control_rate) can work together: the same mode, and in timed mode chunks planned
    for the robot's own period."""
    check_timing(bridge_timing, "bridge.timing")
    check_timing(policy_timing, "policy_node.timing")
    if bridge_timing != policy_timing:
        raise ConfigError(f"bridge.timing is {bridge_timing!r} but policy_node.timing is {policy_timing!r}: both "
                          f"sides must use the same timing mode (run.timing or the launch argument timing:= sets both)")
    if bridge_timing == "timed" and abs(step_rate - control_rate) > 1e-9 * max(step_rate, 1.0):
        raise ConfigError(f"timed: policy_node.control_rate ({control_rate:g}/s, the period the policy plans chunks "
                          f"for) must equal bridge.step_rate ({step_rate:g}/s, the robot's control rate)")


def same_period(period: float, step_rate: float, tolerance: float = 1e-3) -> bool:
    """Whether a chunk planned with `period` seconds per action fits a robot stepping `step_rate` times a second."""
    return abs(period * step_rate - 1.0) <= tolerance
