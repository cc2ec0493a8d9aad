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


class GraphError(MiniVLAError):
    """A node of the ROS graph that `minivla run` or `record` started could not start or died."""
