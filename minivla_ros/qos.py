"""The graph's QoS profiles as rclpy objects; which topic uses which is written in graph.py."""

from rclpy.qos import QoSProfile, qos_profile_sensor_data

from minivla_ros.graph import Topic

SENSOR_QOS = qos_profile_sensor_data  # best effort, keep last 5: a late frame is worthless
RELIABLE_QOS = QoSProfile(depth=10)  # reliable, volatile: ROS 2's default
PROFILES = {"sensor": SENSOR_QOS, "reliable": RELIABLE_QOS}


def profile(topic: Topic) -> QoSProfile:
    return PROFILES[topic.qos]
