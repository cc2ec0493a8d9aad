"""Errors that mean "your input is wrong", as opposed to bugs.

The CLI prints them as one line and exits with status 2; the ROS nodes log them.
"""


class MiniVLAError(Exception):
    """Base class: bad input named in the message."""


class ConfigError(MiniVLAError):
    pass


class CheckpointError(MiniVLAError):
    pass


class DatasetError(MiniVLAError):
    pass


class TaskError(MiniVLAError):
    pass


class InstructionError(MiniVLAError):
    pass


class TrainingError(MiniVLAError):
    """Training cannot go on (the loss became NaN or infinite); no checkpoint is written from that point."""


class NonFiniteActions(ValueError):
    """A policy sampled NaN or infinite actions from inputs it accepts (a state within MAX_STATE_SIGMAS of its
    training states, minivla_core/model/policy.py): its weights are broken (a diverged run, damaged or rescaled
    weights), not the observation. A ValueError, as every action that must not be sent is, so the policy node holds
    as it does for those; `minivla eval` ends with it as a CheckpointError."""


class GraphError(MiniVLAError):
    """A node of the ROS graph that `minivla run` or `record` started could not start or died."""
