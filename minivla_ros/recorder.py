"""Recorder node: writes the demonstration topics to a rosbag2 folder (MCAP by default), as
`ros2 bag record` would, for machines without rosbag2. Which topics: `recorder.topics`, names from the
graph's topic table (minivla_ros/graph.py), by default the demonstration topics of this package's own
messages (graph.RECORDED); config/fetch.yaml records a demonstration in standard messages only.

Messages arrive serialized (`raw=True`) and are written as they are, stamped with their arrival
time, so nothing is decoded on the way. The folder gets its metadata.yaml, and the MCAP file its
message definitions (including this package's own types), when the node shuts down. The MCAP
writer (rosbags) flushes 1 MiB chunks: a recorder that is killed loses at most the last chunk
(about 80 observations at 64x64), and `minivla bag2data` still recovers every episode completed
before it.
Parameters: the fields of RecorderConfig (`recorder.*`).
"""

from __future__ import annotations

from collections import Counter
from importlib import import_module
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys.store import Typestore

from minivla_core.config import RecorderConfig
from minivla_core.errors import ConfigError
from minivla_ros import graph
from minivla_ros.bag_types import make_typestore
from minivla_ros.params import declare_section
from minivla_ros.spin import run_node
# The graph's QoS with deep queues, so a burst never overflows. The sensor topics are published best effort,
# which a reliable subscription would not match.
PROFILES = {"reliable": QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                   durability=DurabilityPolicy.VOLATILE),
            "sensor": QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT,
                                 durability=DurabilityPolicy.VOLATILE),
            "latched": QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.BEST_AVAILABLE)}


def topic_named(name: str) -> graph.Topic:
    """A topic of the graph's table by name (with or without the leading slash), or an extra camera's image topic."""
    name = name.lstrip("/")
    for topic in graph.TOPICS:
        if topic.name == name:
            return topic
    if name.startswith("camera/") and name.endswith("/image_raw"):
        return graph.Topic(name, graph.IMAGE.type, graph.IMAGE.qos, "", "")
    raise ConfigError(f"recorder.topics: {name!r} is not a topic of this graph; known: "
                      f"{', '.join(t.name for t in graph.TOPICS)}, camera/<name>/image_raw")


def message_class(type_name: str):
    """"sensor_msgs/msg/Image" -> the rclpy message class."""
    package, _, name = type_name.split("/")
    return getattr(import_module(f"{package}.msg"), name)


class RecorderNode(Node):
    def __init__(self):
        super().__init__("recorder")
        self.config = declare_section(self, "recorder", RecorderConfig())
        storage = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(self.config.storage)
        if storage is None:
            raise ValueError(f"recorder.storage must be 'mcap' or 'sqlite3', got {self.config.storage!r}")
        path = Path(self.config.out)
        if path.exists():
            raise FileExistsError(f"bag folder {path} already exists; choose a new recorder.out")
        path.parent.mkdir(parents=True, exist_ok=True)
        typestore: Typestore = make_typestore()
        self.writer = Writer(path, version=9, storage_plugin=storage)
        self.writer.open()
        self.counts: Counter[str] = Counter()
        self.topics = [topic_named(name) for name in self.config.topics] if self.config.topics else graph.RECORDED
        for topic in self.topics:
            connection = self.writer.add_connection(topic.absolute, topic.type, typestore=typestore)
            self.create_subscription(message_class(topic.type), topic.absolute,
                                     self.writer_callback(topic.absolute, connection), PROFILES[topic.qos], raw=True)
        topics = ", ".join(topic.absolute for topic in self.topics)
        self.get_logger().info(f"recording {topics} to {path} ({self.config.storage})")

    def writer_callback(self, topic, connection):
        def write(data: bytes) -> None:
            self.writer.write(connection, self.get_clock().now().nanoseconds, data)
            self.counts[topic] += 1
        return write

    def destroy_node(self) -> None:
        self.writer.close()
        counts = ", ".join(f"{topic.absolute} {self.counts[topic.absolute]}" for topic in self.topics)
        self.get_logger().info(f"bag closed: {self.config.out} ({counts})")
        super().destroy_node()


def main(args=None) -> None:
    run_node(RecorderNode, args)


if __name__ == "__main__":
    main()
