"""The sim-plus-policy graph without `ros2 launch` (`minivla run`).

Starts the same two nodes as launch/sim_policy.launch.py, as two processes with the same
parameter file, then acts as the user: it publishes the task's instruction on `instruction`,
waits for the policy to report itself active, follows `episode_status` for N episodes, prints
each episode's result and the policy's measured timing, and stops both nodes (SIGINT, then
SIGKILL after a grace period). Ctrl-C does the same.

DDS traffic stays on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST); unless already set,
each run picks its own ROS_DOMAIN_ID and a temporary ROS_HOME for the logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String

from minivla_ros import qos
from minivla_ros.msg import EpisodeStatus, PolicyStatus

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PARAMS = ROOT / "config" / "sim_policy.yaml"


def ros_environment(env: dict | None = None) -> dict:
    """os.environ plus the settings every ROS process of this project must have."""
    env = dict(os.environ if env is None else env)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
    env.setdefault("ROS_HOME", tempfile.mkdtemp(prefix="minivla-ros-home-"))
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("RCUTILS_CONSOLE_OUTPUT_FORMAT", "[{severity}] [{name}]: {message}")
    return env


def node_command(module: str, params_file: Path, overrides: dict) -> list[str]:
    """The command line that runs one node module with a parameter file and single overrides."""
    command = [sys.executable, "-m", module, "--ros-args", "--params-file", str(params_file)]
    for name, value in overrides.items():
        command += ["-p", f"{name}:={value}"]
    return command


def start_node(module: str, params_file: Path, overrides: dict, env: dict) -> subprocess.Popen:
    return subprocess.Popen(node_command(module, params_file, overrides), env=env, cwd=ROOT)


def stop_processes(processes: list[subprocess.Popen], grace: float = 10.0) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class RunResult:
    task: str
    episodes: list[dict] = field(default_factory=list)
    policy_status: dict = field(default_factory=dict)

    @property
    def successes(self) -> int:
        return sum(e["success"] for e in self.episodes)


class Monitor(Node):
    """The bring-up's own node: sends the instruction, records episodes and policy timing."""

    def __init__(self, context):
        super().__init__("minivla_run", context=context)
        self.instruction_pub = self.create_publisher(String, qos.INSTRUCTION_TOPIC, qos.RELIABLE_QOS)
        self.create_subscription(EpisodeStatus, qos.EPISODE_STATUS_TOPIC, self.on_episode, qos.RELIABLE_QOS)
        self.create_subscription(PolicyStatus, qos.POLICY_STATUS_TOPIC, self.on_policy_status, qos.RELIABLE_QOS)
        self.finished: dict[int, dict] = {}
        self.policy_status: PolicyStatus | None = None
        self.active_status: PolicyStatus | None = None

    def on_episode(self, msg: EpisodeStatus) -> None:
        if msg.done and msg.episode not in self.finished:
            self.finished[msg.episode] = {"episode": msg.episode, "success": msg.success, "steps": msg.step,
                                          "return": round(msg.episode_return, 2)}
            outcome = f"success in {msg.step} steps" if msg.success else f"failed after {msg.step} steps"
            print(f"episode {msg.episode}: {outcome}", flush=True)

    def on_policy_status(self, msg: PolicyStatus) -> None:
        self.policy_status = msg
        if msg.active:  # the figures to report are those from while the policy was acting
            self.active_status = msg


@contextlib.contextmanager
def monitored(label: str):
    """The ROS environment for the node processes, and the bring-up's own Monitor node (in an
    rclpy context of its own: callers may have rclpy initialised already). Yields (env, monitor,
    executor); tears the node down on the way out."""
    env = ros_environment()
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "ROS_HOME")})
    print(f"[minivla {label}] ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, logs in {env['ROS_HOME']}", flush=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    monitor = Monitor(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(monitor)
    try:
        yield env, monitor, executor
    finally:
        executor.shutdown()
        monitor.destroy_node()
        rclpy.try_shutdown(context=context)


def status_dict(msg: PolicyStatus | None) -> dict:
    if msg is None:
        return {}
    names = ("active", "reason", "control_rate", "achieved_rate", "sampling_latency_p50_ms",
             "sampling_latency_p99_ms", "tick_jitter_p99_ms", "ticks", "dropped_ticks", "instruction")
    return {name: getattr(msg, name) for name in names}


def camera_for_checkpoint(params_file: Path, overrides: dict) -> dict:
    """The bridge's env settings that must match the policy's checkpoint (observation protocol, camera,
    its placement, image size), read from the checkpoint the policy node will load. A checkpoint that
    cannot be read gives nothing here: the policy node reports why."""
    from minivla_core.checkpoint import read_checkpoint
    from minivla_core.errors import MiniVLAError

    checkpoint = overrides.get("policy.checkpoint")
    if checkpoint is None:
        params = yaml.safe_load(Path(params_file).read_text())
        checkpoint = params["policy_node"]["ros__parameters"]["policy"]["checkpoint"]
    path = Path(checkpoint) if Path(checkpoint).is_absolute() else ROOT / checkpoint
    try:
        env = read_checkpoint(path)["env"]
    except (MiniVLAError, OSError, KeyError, TypeError):
        return {}
    settings = {"env.observation": env["observation"], "env.camera": env["camera"], "env.image_size": env["image_size"]}
    if env["camera_position"]:  # ROS cannot type an empty array: the scene's own placement is left as configured
        settings["env.camera_position"] = "[" + ", ".join(str(float(v)) for v in env["camera_position"]) + "]"
    return settings


def run(episodes: int, task: str, instruction: str, params_file: Path = DEFAULT_PARAMS,
        overrides: dict | None = None, startup_timeout: float = 120.0) -> RunResult:
    """Bridge + policy for N episodes. The bridge renders what the policy's checkpoint was trained on
    (camera, placement, image size, observation protocol) unless `overrides` say otherwise."""
    overrides = overrides or {}
    bridge_overrides = {"env.task": task, "bridge.episodes": episodes, **camera_for_checkpoint(params_file, overrides),
                        **{k: v for k, v in overrides.items() if k.split(".")[0] in ("env", "bridge")}}
    policy_overrides = {k: v for k, v in overrides.items() if k.startswith("policy.")}
    result = RunResult(task)
    with monitored("run") as (env, monitor, executor):
        processes = [start_node("minivla_ros.sim_bridge", params_file, bridge_overrides, env),
                     start_node("minivla_ros.policy_node", params_file, policy_overrides, env)]
        try:
            deadline = time.monotonic() + startup_timeout
            while not (monitor.policy_status and monitor.policy_status.active):
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    reason = monitor.policy_status.reason if monitor.policy_status else "no policy status received"
                    raise RuntimeError(f"the graph did not start: {reason}")
                # The instruction topic is volatile: repeat it (once per policy status) until the policy has it.
                if monitor.policy_status is not None and monitor.policy_status.instruction != instruction:
                    monitor.instruction_pub.publish(String(data=instruction))
                    monitor.policy_status = None
                executor.spin_once(timeout_sec=0.5)
            print(f"[minivla run] policy active; instruction {instruction!r}; running {episodes} episodes", flush=True)
            while len(monitor.finished) < episodes:
                if any(p.poll() is not None for p in processes):
                    raise RuntimeError("a node exited during the run")
                executor.spin_once(timeout_sec=0.5)
        finally:
            result.episodes = [monitor.finished[k] for k in sorted(monitor.finished)][:episodes]
            result.policy_status = status_dict(monitor.active_status)
            stop_processes(processes)
    return result


def record(episodes: int, task: str, instruction: str, out: Path, storage: str = "mcap",
           params_file: Path = DEFAULT_PARAMS, step_rate: float | None = None, startup_timeout: float = 120.0) -> RunResult:
    """Simulator bridge + scripted expert + recorder for N episodes: a demonstration bag at `out`.

    The recorder and the expert start first; the instruction is published once the recorder
    listens, and the bridge holds its first episode until both subscribe (the recorder to
    robot_state, the expert to sim/privileged_state).
    """
    out = Path(out).resolve()
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new bag folder")
    result = RunResult(task)
    with monitored("record") as (env, monitor, executor):
        recorder = start_node("minivla_ros.recorder", params_file,
                              {"recorder.out": out, "recorder.storage": storage}, env)
        expert = start_node("minivla_ros.expert_node", params_file, {"expert.task": task}, env)
        processes = [expert, recorder]
        try:
            # Recorder and expert first: the recorder must hear the expert's commands from the start.
            deadline = time.monotonic() + startup_timeout
            while (monitor.instruction_pub.get_subscription_count() < 1
                   or monitor.count_publishers("/" + qos.ACTION_TOPIC) < 1):
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    raise RuntimeError("the recorder or the expert did not start")
                executor.spin_once(timeout_sec=0.2)
            end = time.monotonic() + 1.0  # discovery is mutual but not simultaneous: let it settle
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.1)
            monitor.instruction_pub.publish(String(data=instruction))
            # The bridge holds its first episode until the expert and the recorder subscribe to its state.
            bridge_overrides = {"env.task": task, "env.seed": 0, "bridge.episodes": episodes,
                                "bridge.min_subscribers": 2}
            if step_rate:
                bridge_overrides["bridge.step_rate"] = step_rate
            processes = [start_node("minivla_ros.sim_bridge", params_file, bridge_overrides, env), expert, recorder]
            print(f"[minivla record] recording {episodes} {task} expert episodes to {out}", flush=True)
            while len(monitor.finished) < episodes:
                if any(p.poll() is not None for p in processes):
                    raise RuntimeError("a node exited during the recording")
                executor.spin_once(timeout_sec=0.5)
            end = time.monotonic() + 0.5  # the expert's answer to the last observation is still on its way
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.1)
        finally:
            result.episodes = [monitor.finished[k] for k in sorted(monitor.finished)][:episodes]
            stop_processes(processes[:-1])  # bridge and expert first, so the recorder gets their last messages
            time.sleep(0.5)
            stop_processes([recorder])
    return result


def summarize(result: RunResult) -> str:
    n = len(result.episodes)
    steps = [e["steps"] for e in result.episodes if e["success"]]
    lines = [f"{result.task}: {result.successes}/{n} episodes succeeded through the ROS graph"
             + (f", mean steps to success {sum(steps) / len(steps):.1f}" if steps else "")]
    s = result.policy_status
    if s:
        lines.append(f"policy node: control rate {s['control_rate']:.1f} Hz configured, {s['achieved_rate']:.2f} Hz "
                     f"achieved, tick jitter p99 {s['tick_jitter_p99_ms']:.2f} ms, sampling latency p50 "
                     f"{s['sampling_latency_p50_ms']:.1f} ms / p99 {s['sampling_latency_p99_ms']:.1f} ms, "
                     f"{s['dropped_ticks']} dropped ticks of {s['ticks']}")
    return "\n".join(lines)


def write_json(result: RunResult, path: str | Path) -> None:
    data = {"task": result.task, "episodes": len(result.episodes), "successes": result.successes,
            "success_rate": result.successes / max(1, len(result.episodes)),
            "per_episode": result.episodes, "policy_status": result.policy_status}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1) + "\n")
