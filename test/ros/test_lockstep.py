"""Lockstep (bridge.timing and policy_node.timing lockstep, `minivla run`'s default): the simulator steps when the
policy answers its newest observation, so the ROS graph plays every episode as `minivla eval` plays it offline:
the same layouts, the same noise, the same actions, the same outcome in the same number of steps."""

from minivla_core.config import EnvConfig, EvalConfig
from minivla_core.evaluate import evaluate
from minivla_ros import bringup

LOCKSTEP = {"bridge.timing": "lockstep", "policy_node.timing": "lockstep"}
EPISODES = 3


def offline(episodes: int) -> list[tuple[bool, int]]:
    result = evaluate(EvalConfig(checkpoint="checkpoints/push_v3.pt", episodes=episodes, seed=1000, threads=1),
                      EnvConfig(), progress=False)
    return [(e["success"], e["steps"]) for e in result.per_task["push-v3"].per_episode]


def test_lockstep_graph_plays_each_episode_as_offline_eval():
    through_ros = bringup.run(EPISODES, "push-v3", "push the puck to the goal", overrides=LOCKSTEP)
    assert [(e["success"], e["steps"]) for e in through_ros.episodes] == offline(EPISODES)


def test_lockstep_through_standard_messages_plays_as_offline_eval():
    """The same through the standard robot interface: PoseStamped and JointState in, TwistStamped (its stamp names
    the observation it answers) and the gripper's Float64 out; episode starts on std_msgs/Header."""
    standard = {**LOCKSTEP, "bridge.interface": "standard", "robot.state_type": "PoseAndJoints",
                "robot.action_type": "TwistStamped", "robot.episode_topic": "episode"}
    through_ros = bringup.run(EPISODES, "push-v3", "push the puck to the goal", overrides=standard)
    assert [(e["success"], e["steps"]) for e in through_ros.episodes] == offline(EPISODES)
