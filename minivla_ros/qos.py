"""The graph's QoS profiles as rclpy objects; which topic uses which is written in graph.py."""

from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data

from minivla_ros.graph import Topic

SENSOR_QOS = qos_profile_sensor_data  # best effort, keep last 5: a late frame is worthless
RELIABLE_QOS = QoSProfile(depth=10)  # reliable, volatile: ROS 2's default
LATCHED_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)  # the newest for late subscribers
# A subscription to a latched topic: gets a transient-local publisher's newest message, and still matches a volatile
# publisher (which a transient-local subscription would not)
LATCHED_SUBSCRIPTION_QOS = QoSProfile(depth=10, durability=DurabilityPolicy.BEST_AVAILABLE)
PROFILES = {"sensor": SENSOR_QOS, "reliable": RELIABLE_QOS, "latched": LATCHED_QOS}


def profile(topic: Topic) -> QoSProfile:
    """The profile a publisher of `topic` offers (a subscription to a latched topic: LATCHED_SUBSCRIPTION_QOS)."""
    return PROFILES[topic.qos]
