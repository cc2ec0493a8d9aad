"""The message types of a demonstration bag, to read and write it with `rosbags` (no rclpy needed:
bag conversion runs on any machine). Which topics a bag holds is graph.RECORDED.
"""

from __future__ import annotations

from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore


def msg_dir() -> Path:
    """msg/ of the source tree, else share/minivla_ros/msg of an installed package."""
    source = Path(__file__).resolve().parents[1] / "msg"
    if source.is_dir():
        return source
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("minivla_ros")) / "msg"


def message_definitions() -> dict[str, str]:
    """minivla_ros/msg/Name -> .msg text, for every interface of this package."""
    return {f"minivla_ros/msg/{path.stem}": path.read_text() for path in sorted(msg_dir().glob("*.msg"))}


def make_typestore():
    """ROS 2 Jazzy's standard types plus this package's own."""
    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for name, text in message_definitions().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store
