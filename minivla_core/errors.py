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
