"""Topic names and QoS profiles of the graph, named once.

    camera/image_raw   sensor_msgs/Image         sim_bridge -> policy_node   sensor-data QoS
    camera/<name>/image_raw  (one per env.extra_cameras, e.g. camera/gripperPOV/image_raw; same as above)
    robot_state        minivla_ros/RobotState    sim_bridge -> policy_node   sensor-data QoS
    sim/privileged_state minivla_ros/RobotState  sim_bridge -> expert_node   sensor-data QoS
                       (Meta-World's full state, for the scripted expert; never a policy's input)
    episode_status     minivla_ros/EpisodeStatus sim_bridge -> anyone        reliable, depth 10
    action_command     minivla_ros/ActionCommand policy_node -> sim_bridge   reliable, depth 10
    instruction        std_msgs/String           anyone -> policy_node       reliable, depth 10
    policy_status      minivla_ros/PolicyStatus  policy_node -> anyone       reliable, depth 10
    reset_episode      std_srvs/Trigger          service of sim_bridge

The instruction subscription uses the default profile (reliable, volatile): that is what
`ros2 topic pub` offers, and a reliable or transient-local subscription would not match a
best-effort or volatile publisher respectively.
"""

from rclpy.qos import QoSProfile, qos_profile_sensor_data

IMAGE_TOPIC = "camera/image_raw"
STATE_TOPIC = "robot_state"
PRIVILEGED_STATE_TOPIC = "sim/privileged_state"
EPISODE_STATUS_TOPIC = "episode_status"
ACTION_TOPIC = "action_command"
INSTRUCTION_TOPIC = "instruction"
POLICY_STATUS_TOPIC = "policy_status"
RESET_SERVICE = "reset_episode"


def image_topic(camera: str, scene_camera: bool) -> str:
    """The scene camera publishes on IMAGE_TOPIC; each extra camera under camera/<its name>/."""
    return IMAGE_TOPIC if scene_camera else f"camera/{camera}/image_raw"


SENSOR_QOS = qos_profile_sensor_data  # best effort, keep last 5: a late frame is worthless
RELIABLE_QOS = QoSProfile(depth=10)  # reliable, volatile: ROS 2's default
