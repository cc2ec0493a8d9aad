"""The sim-plus-policy graph without `ros2 launch` (`minivla run`), and the policy node alone against a running
robot (`minivla policy`: serve_policy).

Starts the same two nodes as launch/sim_policy.launch.py, as two processes with the same
parameter file, then acts as the user: it publishes the task's instruction on `instruction`,
waits for the policy to report itself active, follows `episode_status` for N episodes, prints
each episode's result and the policy's measured timing, and stops both nodes (SIGINT, then
SIGKILL after a grace period). Ctrl-C does the same. A policy in dry run (policy_node.dry_run)
commands nothing, so no episode would end: the run stops once it has sampled actions, and says so.

DDS traffic stays on this machine: discovery on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST)
and every socket bound to loopback or shared memory (config/fastdds_loopback.xml). Unless already
set, each run reserves a ROS_DOMAIN_ID no other minivla run on this host holds, and a temporary
ROS_HOME for the logs.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from std_msgs.msg import String

from minivla_core.config import RobotConfig, text_from_value
from minivla_core.errors import GraphError
from minivla_core.timing import check_agreement
from minivla_ros import graph, qos
from minivla_ros.msg import EpisodeStatus, PolicyStatus

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PARAMS = graph.PARAMS_FILE
LOOPBACK_PROFILE = ROOT / "config" / "fastdds_loopback.xml"
DOMAIN_LOCKS = Path(tempfile.gettempdir()) / "minivla-ros-domains"
_held_domain_locks = []  # open lock files: a domain stays reserved until this process exits


def lock_domain(domain: int) -> bool:
    """Try to reserve one ROS domain for this process (an flock no other minivla process holds)."""
    DOMAIN_LOCKS.mkdir(exist_ok=True)
    handle = open(DOMAIN_LOCKS / f"{domain}.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    _held_domain_locks.append(handle)
    return True


def reserve_domain_id() -> int:
    """A ROS_DOMAIN_ID in 1..101 that no other minivla run on this host is using, held until exit."""
    for domain in random.sample(range(1, 102), 101):
        if lock_domain(domain):
            return domain
    raise GraphError(f"every ROS domain from 1 to 101 is held by another minivla run (locks in {DOMAIN_LOCKS})")


def ros_environment(env: dict | None = None) -> dict:
    """os.environ plus the settings every ROS process of this project must have.

    A ROS_DOMAIN_ID or DDS profile already set is kept: that is how a user joins a real robot's graph
    on purpose (see docs/networking.md)."""
    env = dict(os.environ if env is None else env)
    if env.get("FASTRTPS_DEFAULT_PROFILES_FILE", str(LOOPBACK_PROFILE)) == str(LOOPBACK_PROFILE):
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # a profile of the user's own: their network, their call
    if "ROS_DOMAIN_ID" not in env:
        env["ROS_DOMAIN_ID"] = str(reserve_domain_id())
    elif env["ROS_DOMAIN_ID"].isdigit() and int(env["ROS_DOMAIN_ID"]) <= 232:
        lock_domain(int(env["ROS_DOMAIN_ID"]))  # keeps automatic picks off a domain chosen by hand
    # Fast DDS 2 (Jazzy) reads the first name, Fast DDS 3 (Kilted) the second.
    env.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(LOOPBACK_PROFILE))
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", env["FASTRTPS_DEFAULT_PROFILES_FILE"])
    env.setdefault("ROS_HOME", tempfile.mkdtemp(prefix="minivla-ros-home-"))
    env.setdefault("RCUTILS_CONSOLE_OUTPUT_FORMAT", "[{severity}] [{name}]: {message}")
    return env


def node_command(node: str, params_file: Path, overrides: dict, module: str | None = None) -> list[str]:
    """The command line that runs one node (a name in graph.NODES) with a parameter file and single overrides
    ("section.field": value, each written as the node declares that field: config.text_from_value). `module`: another
    module that runs the node (benchmarks: bench/slow_policy_node.py)."""
    command = [sys.executable, "-m", module or graph.NODES[node], "--ros-args", "--params-file", str(params_file)]
    for name, value in overrides.items():
        if graph.can_be_said(name, value):  # (an empty list: left out, or a ConfigError)
            command += ["-p", f"{name}:={text_from_value(name, value)}"]
    return command


def start_node(node: str, params_file: Path, overrides: dict, env: dict, module: str | None = None) -> subprocess.Popen:
    """One node in a process of its own. Its output is echoed line by line and its last lines are kept
    (process.tail), so that if it dies its reason can be named. It ends with this process, even if this
    one is killed outright (MINIVLA_PARENT_PID: see minivla_ros/spin.py)."""
    process = subprocess.Popen(node_command(node, params_file, overrides, module), env={**env, "MINIVLA_PARENT_PID":
                               str(os.getpid())}, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, errors="replace")
    process.name = node
    process.tail = collections.deque(maxlen=20)

    def echo():
        for line in process.stdout:
            process.tail.append(line.rstrip())
            print(line, end="", flush=True)

    process.echo = threading.Thread(target=echo, daemon=True)
    process.echo.start()
    return process


def check_alive(processes: list[subprocess.Popen]) -> None:
    """GraphError naming the first node that exited, and why (its last error line, else its last line)."""
    for process in processes:
        if process.poll() is not None:
            process.echo.join(timeout=2.0)  # the node's last lines
            lines = list(process.tail)
            reason = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "")
            raise GraphError(f"{process.name} exited with status {process.returncode}"
                             + (f": {reason}" if reason else " without a word"))


def stop_processes(processes: list[subprocess.Popen], grace: float = 10.0) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"[minivla] {getattr(process, 'name', process.pid)} did not stop within {grace:.0f} s of SIGINT; "
                  "killed", file=sys.stderr, flush=True)
            process.kill()
            process.wait()
        if process.returncode == -signal.SIGALRM:  # spin.STOP_DEADLINE_SECONDS
            print(f"[minivla] {getattr(process, 'name', process.pid)} did not finish stopping in time and ended "
                  "itself", file=sys.stderr, flush=True)
        if getattr(process, "echo", None) is not None:
            process.echo.join(timeout=2.0)  # its last lines come before whatever this process prints next


@dataclass
class RunResult:
    task: str
    episodes: list[dict] = field(default_factory=list)
    policy_status: dict = field(default_factory=dict)
    timing: str = "free"  # the policy node's: free (its own clock), lockstep (one answer per observation) or timed
    executor: dict = field(default_factory=dict)  # timed: the bridge's executor counts (minivla_core/timed.py)
    dry_run: bool = False  # the policy was in dry run: it sampled actions, commanded none, and no episode ran

    @property
    def successes(self) -> int:
        return sum(e["success"] for e in self.episodes)


class Monitor(Node):
    """The bring-up's own node: sends the instruction, records episodes and policy timing."""

    def __init__(self, context):
        super().__init__("minivla_run", context=context)
        self.instruction_pub = self.create_publisher(String, graph.INSTRUCTION.name, qos.profile(graph.INSTRUCTION))
        self.create_subscription(EpisodeStatus, graph.EPISODE_STATUS.name, self.on_episode,
                                 qos.profile(graph.EPISODE_STATUS))
        self.create_subscription(PolicyStatus, graph.POLICY_STATUS.name, self.on_policy_status,
                                 qos.profile(graph.POLICY_STATUS))
        # A bridge of bridge.interface standard says how each episode ended on /diagnostics instead.
        self.create_subscription(DiagnosticArray, graph.DIAGNOSTICS.absolute, self.on_diagnostics,
                                 qos.profile(graph.DIAGNOSTICS))
        self.finished: dict[int, dict] = {}
        self.executor_counts: dict = {}  # a bridge in timed timing: what its executor did, as of the newest episode
        self.policy_status: PolicyStatus | None = None
        self.active_status: PolicyStatus | None = None

    def on_episode(self, msg: EpisodeStatus) -> None:
        if msg.done:
            self.episode_ended(msg.episode, msg.success, msg.step, msg.episode_return)

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "sim_bridge: executor":
                self.executor_counts = {item.key: float(item.value) for item in status.values}
            if status.name == "sim_bridge: episode":
                values = {item.key: item.value for item in status.values}
                self.episode_ended(int(values["episode"]), values["success"] == "True", int(values["steps"]),
                                   float(values["return"]))

    def episode_ended(self, episode: int, success: bool, steps: int, episode_return: float) -> None:
        if episode not in self.finished:
            self.finished[episode] = {"episode": episode, "success": bool(success), "steps": steps,
                                      "return": round(episode_return, 2)}
            outcome = f"success in {steps} steps" if success else f"failed after {steps} steps"
            print(f"episode {episode}: {outcome}", flush=True)

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
    os.environ.update(env)  # the Monitor node below is one of the graph's processes too
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
    """The bridge's env settings that must match the policy's checkpoint (observation protocol, cameras,
    the scene camera's placement, image size), read from the checkpoint the policy node will load. A
    checkpoint that cannot be read gives nothing here: the policy node reports why."""
    from minivla_core.checkpoint import read_checkpoint
    from minivla_core.errors import MiniVLAError

    checkpoint = overrides.get("policy_node.checkpoint")
    if checkpoint is None:
        params = yaml.safe_load(Path(params_file).read_text())
        checkpoint = params["policy_node"]["ros__parameters"]["policy_node"]["checkpoint"]
    path = Path(checkpoint) if Path(checkpoint).is_absolute() else ROOT / checkpoint
    try:
        env = read_checkpoint(path)["env"]
    except (MiniVLAError, OSError, KeyError, TypeError):
        return {}
    settings = {"env.observation": env["observation"], "env.camera": env["camera"], "env.image_size": env["image_size"]}
    if env["camera_position"]:  # ROS cannot type an empty array: the scene's own placement is left as configured
        settings["env.camera_position"] = env["camera_position"]
    if env["extra_cameras"]:
        settings["env.extra_cameras"] = env["extra_cameras"]
    return settings


def has_sampled_in_dry_run(status: PolicyStatus | None, instruction: str) -> bool:
    """Whether a policy status says: dry run (so never active), ready, with this instruction, and it has sampled
    actions (a sampling latency is measured only when a chunk was sampled)."""
    return (status is not None and status.reason.startswith("dry run") and status.instruction == instruction
            and status.sampling_latency_p50_ms > 0)


def check_graph_timing(params_file: Path, bridge_overrides: dict, policy_overrides: dict) -> None:
    """ConfigError before anything starts if the bridge and the policy would not agree on timing
    (minivla_core/timing.py)."""
    setting = graph.node_setting
    check_agreement(setting(params_file, "sim_bridge", "bridge.timing", bridge_overrides),
                    float(setting(params_file, "sim_bridge", "bridge.step_rate", bridge_overrides)),
                    setting(params_file, "policy_node", "policy_node.timing", policy_overrides),
                    float(setting(params_file, "policy_node", "policy_node.control_rate", policy_overrides)))


def run(episodes: int, task: str, instruction: str, params_file: Path = DEFAULT_PARAMS,
        overrides: dict | None = None, startup_timeout: float = 120.0, duration: float | None = None,
        observe=None, policy_module: str | None = None) -> RunResult:
    """Bridge + policy for N episodes (0: no limit), or until `duration` seconds of acting have passed.
    The bridge renders what the policy's checkpoint was trained on (camera, placement, image size,
    observation protocol) unless `overrides` say otherwise. `observe(processes, monitor)`, if given, is
    called about twice a second while the policy acts (bench/bench_soak.py samples memory there). `policy_module`
    runs the policy node instead of minivla_ros.policy_node (benchmarks only: bench/slow_policy_node.py)."""
    overrides = overrides or {}
    bridge_overrides = {"env.task": task, "bridge.episodes": episodes, **camera_for_checkpoint(params_file, overrides),
                        **{k: v for k, v in overrides.items() if k.split(".")[0] in ("env", "bridge")}}
    policy_overrides = {k: v for k, v in overrides.items() if k.split(".")[0] in ("policy_node", "robot")}
    check_graph_timing(params_file, bridge_overrides, policy_overrides)
    warning = graph.sim_policy_warning(params_file, {"sim_bridge": bridge_overrides, "policy_node": policy_overrides},
                                       cwd=ROOT)  # the nodes run in ROOT
    if warning:
        print(f"[minivla run] {warning}", file=sys.stderr, flush=True)
    result = RunResult(task, timing=policy_overrides.get("policy_node.timing", "free"))
    with monitored("run") as (env, monitor, executor):
        processes = [start_node("sim_bridge", params_file, bridge_overrides, env),
                     start_node("policy_node", params_file, policy_overrides, env, policy_module)]
        dry_run_status = None
        try:
            deadline = time.monotonic() + startup_timeout
            while not (monitor.policy_status and monitor.policy_status.active):
                check_alive(processes)
                status = monitor.policy_status
                if status is not None and status.reason.startswith("no policy loaded"):
                    raise GraphError(f"policy_node: {status.reason}")
                if has_sampled_in_dry_run(status, instruction):
                    dry_run_status = status
                    break
                if time.monotonic() > deadline:
                    reason = status.reason if status else "no policy status received"
                    raise GraphError(f"the graph did not start within {startup_timeout:.0f} s: {reason}")
                # The instruction topic is volatile: repeat it (once per policy status) until the policy has it.
                if monitor.policy_status is not None and monitor.policy_status.instruction != instruction:
                    monitor.instruction_pub.publish(String(data=instruction))
                    monitor.policy_status = None
                executor.spin_once(timeout_sec=0.5)
            if dry_run_status is not None:
                result.dry_run = True
                print(f"[minivla run] policy in dry run: it sampled actions for {instruction!r} and commands "
                      f"nothing, so no episode can end; stopping", flush=True)
                return result
            what = f"{episodes} episodes" if episodes else f"{duration:.0f} s"
            print(f"[minivla run] policy active; instruction {instruction!r}; running {what}", flush=True)
            end = time.monotonic() + duration if duration else float("inf")
            while (not episodes or len(monitor.finished) < episodes) and time.monotonic() < end:
                check_alive(processes)
                executor.spin_once(timeout_sec=0.5)
                if observe is not None:
                    observe(processes, monitor)
        finally:
            result.episodes = [monitor.finished[k] for k in sorted(monitor.finished)][:episodes or None]
            result.policy_status = status_dict(monitor.active_status or dry_run_status)
            stop_processes(processes)
            result.executor = monitor.executor_counts
    return result


def record(episodes: int, task: str, instruction: str, out: Path, storage: str = "mcap",
           params_file: Path = DEFAULT_PARAMS, step_rate: float | None = None,
           startup_timeout: float = 120.0, overrides: dict | None = None) -> RunResult:
    """Simulator bridge + scripted expert + recorder for N episodes: a demonstration bag at `out`.

    The recorder and the expert start first; the instruction is published once the recorder
    listens, and the bridge holds its first episode until both subscribe (the recorder to
    robot_state, the expert to sim/privileged_state; with bridge.interface standard, to joint_states
    and sim/scene_state). `overrides` ("section.field": value) go to the nodes that declare the section.
    """
    overrides = overrides or {}

    def settings(*sections: str) -> dict:
        return {k: v for k, v in overrides.items() if k.split(".")[0] in sections}

    robot = RobotConfig(**{k.split(".", 1)[1]: v for k, v in settings("robot").items()})
    command_topic = graph.ACTION.absolute if robot.action_type == "ActionCommand" else "/" + robot.action_topic
    out = Path(out).resolve()
    if out.exists():
        raise GraphError(f"{out} already exists; choose a new bag folder")
    result = RunResult(task)
    with monitored("record") as (env, monitor, executor):
        recorder = start_node("recorder", params_file,
                              {**settings("recorder"), "recorder.out": out, "recorder.storage": storage}, env)
        expert = start_node("expert_node", params_file, {**settings("expert", "robot"), "expert.task": task}, env)
        processes = [expert, recorder]
        try:
            # Recorder and expert first: the recorder must hear the expert's commands from the start.
            deadline = time.monotonic() + startup_timeout
            while (monitor.instruction_pub.get_subscription_count() < 1
                   or monitor.count_publishers(command_topic) < 1):
                check_alive(processes)
                if time.monotonic() > deadline:
                    raise GraphError(f"the recorder or the expert did not start within {startup_timeout:.0f} s")
                executor.spin_once(timeout_sec=0.2)
            end = time.monotonic() + 1.0  # discovery is mutual but not simultaneous: let it settle
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.1)
            monitor.instruction_pub.publish(String(data=instruction))
            # The bridge holds its first episode until the expert and the recorder subscribe to its state.
            bridge_overrides = {**graph.RECORD_BRIDGE_OVERRIDES, **settings("env", "bridge"), "env.task": task,
                                "bridge.episodes": episodes}
            if step_rate:
                bridge_overrides["bridge.step_rate"] = step_rate
            processes = [start_node("sim_bridge", params_file, bridge_overrides, env), expert, recorder]
            print(f"[minivla record] recording {episodes} {task} expert episodes to {out}", flush=True)
            while len(monitor.finished) < episodes:
                check_alive(processes)
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


def serve_policy(parameters: dict, label: str = "policy") -> None:
    """The policy node alone (`minivla policy`), against a robot that is running already: a node with `parameters`
    (graph.ros_parameters), in this process's ROS environment (ros_environment: a ROS_DOMAIN_ID already set is
    kept, which is how it joins a robot's graph), until Ctrl-C or SIGTERM, then stopped as `run` stops its nodes
    (SIGINT, SIGKILL after a grace period). GraphError naming its reason if the node exits on its own."""
    env = ros_environment()
    domain = "" if "ROS_DOMAIN_ID" in os.environ else " (a domain of its own: ROS_DOMAIN_ID was not set)"
    dds = ("DDS on loopback (docs/networking.md: a robot on another machine)" if env.get(
        "ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST" else "DDS as your profile says")
    print(f"[minivla {label}] ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}{domain}, {dds}, logs in {env['ROS_HOME']}; "
          f"Ctrl-C stops the policy node", flush=True)
    with tempfile.TemporaryDirectory(prefix="minivla-policy-") as folder:
        params_file = Path(folder) / "policy_node.yaml"
        params_file.write_text(yaml.safe_dump(parameters, sort_keys=False))
        process = start_node("policy_node", params_file, {}, env)
        interrupted = False
        try:
            while process.poll() is None:
                time.sleep(0.2)
        except KeyboardInterrupt:
            interrupted = True
            print(f"[minivla {label}] stopping the policy node", flush=True)
        finally:
            stop_processes([process])
    if not interrupted:
        check_alive([process])


def summarize(result: RunResult) -> str:
    s = result.policy_status
    if result.dry_run:
        return (f"{result.task}: dry run (policy_node.dry_run): the policy sampled actions from the simulator's "
                f"observations and commanded nothing, so no episode was run\npolicy node: sampling latency p50 "
                f"{s['sampling_latency_p50_ms']:.1f} ms / p99 {s['sampling_latency_p99_ms']:.1f} ms")
    n = len(result.episodes)
    steps = [e["steps"] for e in result.episodes if e["success"]]
    lines = [f"{result.task}: {result.successes}/{n} episodes succeeded through the ROS graph"
             + (f", mean steps to success {sum(steps) / len(steps):.1f}" if steps else "")]
    if s and result.timing == "lockstep":
        lines.append(f"policy node (lockstep: the simulator stepped on each answer): {s['ticks']} observations "
                     f"answered, {s['achieved_rate']:.1f} a second; sampling latency p50 "
                     f"{s['sampling_latency_p50_ms']:.1f} ms / p99 {s['sampling_latency_p99_ms']:.1f} ms")
    elif s and result.timing == "timed":
        x = result.executor
        lines.append(f"policy node (timed: whole chunks executed on the bridge's clock): {s['ticks']} chunks, latency "
                     f"observation to chunk p50 {s['sampling_latency_p50_ms']:.1f} ms / p99 "
                     f"{s['sampling_latency_p99_ms']:.1f} ms; bridge: {x.get('applied', 0):.0f} actions applied, "
                     f"{x.get('held', 0):.0f} steps held, {x.get('expired', 0):.0f} expired, "
                     f"{x.get('refused_chunks', 0):.0f} chunks of another episode refused")
    elif s:
        lines.append(f"policy node: control rate {s['control_rate']:.1f} Hz configured, {s['achieved_rate']:.2f} Hz "
                     f"achieved, tick jitter p99 {s['tick_jitter_p99_ms']:.2f} ms, sampling latency p50 "
                     f"{s['sampling_latency_p50_ms']:.1f} ms / p99 {s['sampling_latency_p99_ms']:.1f} ms, "
                     f"{s['dropped_ticks']} dropped ticks of {s['ticks']}")
    return "\n".join(lines)


def write_json(result: RunResult, path: str | Path) -> None:
    data = {"task": result.task, "dry_run": result.dry_run, "episodes": len(result.episodes),
            "successes": result.successes,
            "success_rate": result.successes / max(1, len(result.episodes)),
            "per_episode": result.episodes, "policy_status": result.policy_status, "executor": result.executor}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1) + "\n")
