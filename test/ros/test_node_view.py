"""The policy node's rerun view (policy_node.view_save; view_url streams the same to a viewer): the simulator and the
policy node over DDS, in lockstep and in timed execution, and the node's recording read back with rerun's own reader.
It holds what the policy saw and planned, each chunk drawn from the hand it was sampled at."""

import signal
import sys

import numpy as np
import pytest
from rclpy.node import Node

from minivla_core.checkpoint import read_checkpoint
from minivla_ros import graph, qos
from minivla_ros.msg import ActionChunk, ActionCommand
from ros_helpers import wait_until
from test_graph import CHECKPOINT

rerun_chunk = pytest.importorskip("rerun.chunk", reason="rerun-sdk (requirements.txt) is not installed: "
                                  "policy_node.view_save needs it")


def rows(chunks: list, entity: str, column: str, timeline: str) -> list[tuple]:
    """(time on `timeline`, value of `column`) of each row logged at `entity`, in time order."""
    found = []
    for chunk in chunks:
        if chunk.entity_path == entity and not chunk.is_static and timeline in chunk.timeline_names:
            batch = chunk.to_record_batch()
            times = batch.column(timeline).cast("int64").to_pylist()  # (the stamp timeline: nanoseconds)
            found += zip(times, batch.column(column).to_pylist())
    return sorted(found, key=lambda row: row[0])


class ChunkCounter(Node):
    """Counts the chunks the policy node commands: those of action_command (lockstep) or action_chunk (timed)."""

    def __init__(self, timing: str):
        super().__init__("test_view_chunk_counter")
        self.chunks: set = set()
        if timing == "timed":
            self.create_subscription(ActionChunk, graph.ACTION_CHUNK.name,
                                     lambda msg: self.chunks.add((msg.episode, msg.chunk)),
                                     qos.profile(graph.ACTION_CHUNK))
        else:
            self.create_subscription(ActionCommand, graph.ACTION.name, lambda msg: self.chunks.add(msg.chunk),
                                     qos.profile(graph.ACTION))


@pytest.mark.parametrize("timing", ["lockstep", "timed"])
def test_the_policy_nodes_view_holds_what_it_saw_and_planned(node_process, tmp_path, timing):
    recording = tmp_path / "view" / "node.rrd"
    payload = read_checkpoint(CHECKPOINT)
    _, bridge_log = node_process("sim_bridge", **{"bridge.timing": timing})
    policy, policy_log = node_process("policy_node", **{
        "policy_node.timing": timing, "policy_node.checkpoint": str(CHECKPOINT),
        "policy_node.instruction": "push the puck to the goal", "policy_node.view_save": str(recording)})
    counter = ChunkCounter(timing)
    try:
        assert wait_until(counter, lambda: len(counter.chunks) >= 3, 120), policy_log() + bridge_log()
    finally:
        counter.destroy_node()
    policy.send_signal(signal.SIGINT)  # the node winds down: its view writes out what is queued
    assert policy.wait(timeout=60) == 0, policy_log()
    assert "showing what the policy sees and plans in rerun" in policy_log()

    chunks = list(rerun_chunk.RrdReader(recording).stream())
    entities = {chunk.entity_path for chunk in chunks}
    camera = f"/camera/{payload['env']['camera']}"
    assert {camera, "/state", "/world/hand", "/world/plan/chunk", "/world/denoising", "/policy/sample_ms",
            "/episode/log"} <= entities
    # Lockstep commands one action per observation, shown with the part of the chunk it executes; timed execution
    # sends whole chunks, which the robot's clock executes: no action of its own to show.
    assert ({"/action", "/world/plan/executed"} <= entities) == (timing == "lockstep")

    # Each chunk is drawn from the hand of the observation it was sampled from (the same stamp), also in timed
    # execution, where it arrives while the robot has moved on.
    states = dict(rows(chunks, "/state", "Scalars:scalars", "stamp"))
    plans = rows(chunks, "/world/plan/chunk", "LineStrips3D:strips", "stamp")
    assert plans
    horizon = payload["model_config"]["horizon"]
    for stamp, strips in plans:
        path = np.array(strips[0])
        assert len(path) >= horizon + 1  # (timed: a chunk stretched for a slow sampler is longer)
        np.testing.assert_allclose(path[0], states[stamp][:3], atol=1e-6)
    # The denoising shown: inference_steps paths per chunk, the last of them the chunk executed (lockstep: the
    # chunk as sampled; a timed chunk may be stretched, and the core's test checks its inpainted denoising).
    steps = payload["model_config"]["inference_steps"]
    denoising = rows(chunks, "/world/denoising", "LineStrips3D:strips", "stamp")
    assert len(denoising) == steps * len(plans)
    if timing == "lockstep":
        last_steps = {stamp: np.array(strips[0]) for stamp, strips in denoising}  # (in order: the last one wins)
        for stamp, strips in plans:
            np.testing.assert_allclose(last_steps[stamp], np.array(strips[0]), atol=1e-5)


def test_minivla_run_view_shows_the_graph_in_the_browser(tmp_path):
    """`minivla run --view`: the command serves the viewer, the policy node streams to it, the page shows it."""
    from browser_view import browser_missing_reason, free_port_pair, policy_view_layout, view_command

    reason = browser_missing_reason()
    if reason:
        pytest.skip(reason)
    command = [sys.executable, "-m", "minivla", "run", "--episodes", "1", "--view", "--view-port",
               str(free_port_pair())]
    camera = read_checkpoint(CHECKPOINT)["env"]["camera"]
    seen, output, code = view_command(command, tmp_path / "run_view.png", "minivla_run", policy_view_layout(camera))
    assert seen.shown, (seen, output[-3000:])  # the recording, laid out by its blueprint
    assert code == 0 and "/1 episodes succeeded through the ROS graph" in output, output[-3000:]
