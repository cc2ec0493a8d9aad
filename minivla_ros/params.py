"""ROS parameters declared from the config dataclasses, so nodes, CLI and YAML share one schema and its
checks (each section's validate()).

A field `task` of the `env` section becomes the parameter `env.task`; in a parameter file it
nests as `env: {task: push-v3}`, the same shape as minivla's own YAML config. Parameters a node
cannot change while running are declared read-only, so `ros2 param set` refuses them instead of
reporting a success that changes nothing; the node applies the others in its parameter callback.
"""

from __future__ import annotations

import dataclasses

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from minivla_core.errors import ConfigError

# ROS cannot tell an empty list's element type; such fields are declared by their annotation instead.
EMPTY_LIST_TYPES = {"list[str]": Parameter.Type.STRING_ARRAY, "list[float]": Parameter.Type.DOUBLE_ARRAY}


def declare_section(node: Node, section: str, defaults, changeable: tuple[str, ...] = ()):
    """Declare one parameter per dataclass field (default = the field's value), read-only unless its name
    is in `changeable`; return the filled dataclass, validated against the schema (a ConfigError names the
    first parameter out of its choices or range: the node says so in one line and exits, minivla_ros/spin.py)."""
    values = {}
    for field in dataclasses.fields(defaults):
        name = f"{section}.{field.name}"
        default = getattr(defaults, field.name)
        descriptor = ParameterDescriptor(read_only=name not in changeable)
        if default == [] and field.type in EMPTY_LIST_TYPES:
            value = node.declare_parameter(name, EMPTY_LIST_TYPES[field.type], descriptor).value  # None unless given
            values[field.name] = list(value) if value is not None else []
        else:
            node.declare_parameter(name, default, descriptor)
            value = node.get_parameter(name).value
            values[field.name] = list(value) if isinstance(default, list) else value  # arrays come as array.array
    return type(defaults)(**values).validate(section)


def refuse_unknown_parameters(node: Node) -> None:
    """ROS keeps a parameter it was given (in a file or with -p) but the node never declares, and ignores it
    in silence: `-p policy.checkpoint:=mine.pt` (the section is `policy_node`) would run the default
    checkpoint. A ConfigError names such parameters instead. (rclpy has no public way to list the values it
    was given; `_parameter_overrides` has held them since Foxy.)"""
    given = getattr(node, "_parameter_overrides", {})
    unknown = sorted(name for name in given if not node.has_parameter(name))
    if unknown:
        sections = sorted({name.split(".")[0] for name in node._parameters if "." in name})
        raise ConfigError(f"{node.get_name()} has no parameter(s) {', '.join(unknown)}; its parameters are "
                          f"{', '.join(section + '.*' for section in sections)} (minivla_core/config.py)")
