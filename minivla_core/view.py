"""A live view of what the policy sees and plans, in rerun (rerun-sdk, pinned in requirements.txt): `minivla eval
--view` and `minivla run --view` serve a web viewer from this computer, `--view-save FILE.rrd` writes the recording
(`rerun FILE.rrd` opens it).

What is logged, on two timelines: "step" counts the observations of the whole run (each episode follows the one
before, so none hides another), "denoise_step" counts DDIM steps the same way (each chunk's follow the chunk's
before). A robot's observations (the policy node's) are also on a third, "stamp": their time.
    camera/NAME          each camera's image as the policy sees it (after eval.image_ablation)
    state, action        the policy's state and the applied action (plots)
    world/hand           the hand's position: the state's first 3 numbers on the simulated robots
    world/hand_trail     where the hand has been this episode (its last TRAIL_STEPS steps)
    world/plan/chunk     each sampled chunk as the path the hand would take: the hand's position plus the running
                         sum of the chunk's xyz actions times the hand step (metres per step for an action of 1)
    world/plan/executed  the part of that path executed so far, in another colour
    world/denoising      the chunk after each DDIM step, as the same kind of path, on the "denoise_step" timeline
    policy/sample_ms     how long sampling the chunk took
    episode/log          each episode's start (task, episode, instruction) and end; episode/success: 1 or 0
A blueprint lays them out: the cameras and the episodes' log, the two 3-D views, the plots.

Three parts:
- ViewerServer: rerun's web viewer page and the gRPC server it reads the recording from, a `rerun --serve-web`
  process bound to 127.0.0.1 only, as the ROS graph's DDS stays on this computer by default. It keeps what it was sent,
  so a page opened after the run still shows all of it. From another computer: `ssh -L PORT:127.0.0.1:PORT -L
  PORT+1:127.0.0.1:PORT+1`.
- PolicyView: one recording, streamed to a viewer's address (a ViewerServer's, or a `rerun` viewer the user started),
  written to an .rrd file, both, or neither (then every method returns at once, so a loop calls it without asking).
- LiveView: a PolicyView fed from a control loop that must never wait for it (the policy node): each call queues its
  data and returns; a thread of its own logs it. When the view falls behind, what comes next is dropped and counted.
"""

from __future__ import annotations

import ctypes
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import numpy as np

from minivla_core.actions import HAND_STEP
from minivla_core.errors import ConfigError

PLAN_COLOUR, EXECUTED_COLOUR = [150, 150, 150], [255, 140, 0]  # grey: the whole chunk; orange: its executed part
DENOISING_COLOUR, HAND_COLOUR = [80, 140, 255], [220, 40, 40]
HAND_RADIUS, PATH_RADIUS = 0.005, 0.0015  # metres: a chunk's path spans a few centimetres
ACTION_NAMES = ["dx", "dy", "dz", "gripper"]  # the simulated arms' 4 numbers (hand velocity, gripper)
TRAIL_STEPS = 500  # a robot with no episodes would otherwise log an ever longer trail at every step
SERVER_START_S = 30.0  # the viewer server answers within a second or two; a slow machine gets more


def import_rerun(setting: str):
    try:
        import rerun
    except ImportError as exc:
        raise ConfigError(f"{setting} needs rerun-sdk (pip install -r requirements.txt): {exc}") from None
    return rerun


def check_free(port: int, what: str, setting: str) -> None:
    """A ConfigError unless this computer's `port` is free to serve on (what: what would be served there)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server does: a closed one's port is free
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ConfigError(f"{setting}: port {port}, for {what}, is in use ({exc.strerror}); choose another "
                              f"with --view-port (the port and the next one)") from None


def answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def end_with_parent() -> None:
    """In the server's process before it starts (Linux): end when the process that started it ends, even killed."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG (linux/prctl.h)


class ViewerServer:
    """rerun's web viewer on `port` and the recording's gRPC server on `port` + 1, both on 127.0.0.1 only.

    `uri` is where a PolicyView streams to; `url` is the page to open in a browser (it names `uri`). `setting`: the
    config field that chose the port, for errors."""

    def __init__(self, port: int, setting: str = "eval.view_port"):
        try:
            import rerun_cli  # (rerun-sdk's) the viewer program, started directly: `python -m rerun` would make it a
        except ImportError as exc:  # child of another process, left running when that one is ended
            raise ConfigError(f"{setting.rsplit('_', 1)[0]} needs rerun-sdk (pip install -r requirements.txt): "
                              f"{exc}") from None
        check_free(port, "the viewer page", setting)  # rerun would log a port in use and go on: asked first
        check_free(port + 1, "the recording the page reads", setting)
        self.port, self.uri = port, f"rerun+http://127.0.0.1:{port + 1}/proxy"
        self.url = f"http://127.0.0.1:{port}/?url={quote(self.uri, safe='')}"
        program = Path(rerun_cli.__file__).parent / "rerun"
        self.log_path = Path(tempfile.mkstemp(prefix="minivla-viewer-", suffix=".log")[1])
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [str(program), "--serve-web", "--bind", "127.0.0.1", "--port", str(port + 1),
                 "--web-viewer-port", str(port)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=end_with_parent)
        deadline = time.monotonic() + SERVER_START_S
        while not (answers(port) and answers(port + 1)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise ConfigError(f"the rerun viewer server ({setting} {port} and {port + 1}) did not start: "
                                  f"{' / '.join(tail) or 'no output'} (log: {self.log_path})")
            time.sleep(0.1)
        print(f"viewer: {self.url}", flush=True)

    def __enter__(self) -> ViewerServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait(self) -> None:
        """Keep serving until Ctrl-C, so the page can still be read after the run."""
        print(f"the viewer keeps serving {self.url}: Ctrl-C to end", flush=True)
        try:
            while self.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class PolicyView:
    """One rerun recording of a run: streamed to `connect` (a viewer's gRPC address: ViewerServer.uri, or
    rerun+http://127.0.0.1:9876/proxy for a `rerun` viewer started by hand), written to `save` (.rrd), both, or
    neither. `setting`: the config field that asked for it, for errors. Call it from one thread (rerun's time is
    per thread): LiveView does that for a loop that must not wait."""

    def __init__(self, connect: str = "", save: str = "", setting: str = "eval.view", name: str = "minivla_eval"):
        self.recording = None
        self.step_count = self.denoise_count = 0  # the "step" and "denoise_step" timelines
        self.cameras: list[str] = []  # those of the blueprint sent
        self.hand_step: float | None = None  # metres per step for an action of 1; None: no hand to draw
        self.plan_path: np.ndarray | None = None
        self.trail: deque[np.ndarray] = deque(maxlen=TRAIL_STEPS)  # the hand's positions this episode
        if not (connect or save):
            return
        rr = self.rr = import_rerun(setting)
        self.recording = rr.RecordingStream(name)
        try:
            sinks = [rr.GrpcSink(connect)] if connect else []
            if save:
                Path(save).parent.mkdir(parents=True, exist_ok=True)
                sinks.append(rr.FileSink(save))
            self.recording.set_sinks(*sinks)
        except Exception as exc:  # a bad address, a file that cannot be written: rerun's own error, named
            raise ConfigError(f"the rerun view ({setting}: {connect or save!r}) could not start: {exc}") from None
        self.recording.log("action", rr.SeriesLines(names=ACTION_NAMES), static=True)

    @classmethod
    def for_eval(cls, eval_config, server: ViewerServer | None) -> PolicyView:
        """An evaluation's view: eval.view streams to `server`, eval.view_save writes the file."""
        return cls(server.uri if server else "", eval_config.view_save, "eval.view")

    def start_episode(self, task: str, episode: int, instruction: str, cameras: list[str],
                      hand_step: float | None) -> None:
        """A new episode: its cameras' names, and the metres the hand moves in one step for an action of 1 (None: the
        state does not start with a hand position, or the action is not a hand velocity: nothing drawn in 3-D)."""
        if self.recording is None:
            return
        self.describe(cameras, hand_step)
        self.plan_path = None
        self.trail.clear()
        self.recording.set_time("step", sequence=self.step_count)
        self.recording.log("episode/log", self.rr.TextLog(f"{task} episode {episode} starts: {instruction!r}"))

    def describe(self, cameras: list[str], hand_step: float | None) -> None:
        """What is shown (as start_episode says), before any episode starts: a robot may have no episodes."""
        if self.recording is None:
            return
        if list(cameras) != self.cameras:
            self.cameras = list(cameras)
            self.recording.send_blueprint(self.blueprint())
        self.hand_step = hand_step

    def observe(self, images: np.ndarray, state: np.ndarray, stamp: float | None = None) -> None:
        """What the policy sees now (images (cameras, H, W, 3), state): a new step; action and chunk belong to it.
        `stamp`: the observation's time in seconds (a robot's: the "stamp" timeline), if it has one."""
        if self.recording is None:
            return
        rr, log = self.rr, self.recording.log
        self.recording.set_time("step", sequence=self.step_count)
        if stamp is not None:
            self.recording.set_time("stamp", timestamp=stamp)
        self.step_count += 1
        for name, image in zip(self.cameras, images):
            log(f"camera/{name}", rr.Image(image))
        log("state", rr.Scalars(state))
        if self.hand_step is not None:
            self.trail.append(np.asarray(state[:3], dtype=np.float64))
            log("world/hand", rr.Points3D([state[:3]], colors=[HAND_COLOUR], radii=HAND_RADIUS))
            log("world/hand_trail", rr.LineStrips3D([np.array(self.trail)], colors=[HAND_COLOUR],
                                                    radii=PATH_RADIUS / 2))

    def chunk(self, state: np.ndarray, actions: np.ndarray, sample_seconds: float,
              denoise: Callable[[], list[np.ndarray]] | None = None, stamp: float | None = None) -> None:
        """A chunk just sampled from the observation with `state` (this step's, or the one of `stamp`, sampled while
        the robot went on): its path, how long it took, and, if `denoise` is given, the chunk after each DDIM step
        (what it returns: PolicyRunner.denoising)."""
        if self.recording is None:
            return
        rr, log = self.rr, self.recording.log
        if stamp is not None:  # beside the observation it was sampled from, on the "stamp" timeline
            self.recording.set_time("stamp", timestamp=stamp)
        log("policy/sample_ms", rr.Scalars(1e3 * sample_seconds))
        if self.hand_step is None:
            return
        self.plan_path = self.hand_path(state, actions)
        log("world/plan/chunk", rr.LineStrips3D([self.plan_path], colors=[PLAN_COLOUR], radii=PATH_RADIUS))
        steps = denoise() if denoise is not None else []
        for number, chunk in enumerate(steps):
            self.recording.set_time("denoise_step", sequence=self.denoise_count)
            log("world/denoising", rr.LineStrips3D([self.hand_path(state, chunk)], colors=[DENOISING_COLOUR],
                                                   radii=PATH_RADIUS, labels=[f"DDIM step {number + 1}/{len(steps)}"]))
            self.denoise_count += 1
        self.recording.disable_timeline("denoise_step")  # what follows belongs to steps only

    def action(self, action: np.ndarray, step_in_chunk: int | None) -> None:
        """The action applied at this step, the `step_in_chunk`-th (from 0) of the latest chunk (None: not from it;
        in timed execution a hold, or the chunk before, which runs while the latest is sampled)."""
        if self.recording is None:
            return
        self.recording.log("action", self.rr.Scalars(action))
        if self.plan_path is not None and step_in_chunk is not None:  # the path up to where this action takes the hand
            self.recording.log("world/plan/executed", self.rr.LineStrips3D(
                [self.plan_path[: step_in_chunk + 2]], colors=[EXECUTED_COLOUR], radii=2 * PATH_RADIUS))

    def hand_path(self, state: np.ndarray, chunk: np.ndarray) -> np.ndarray:
        """(horizon + 1, 3): where the hand would go under the chunk's actions, from where it is now."""
        return planned_hand_path(state, chunk, self.hand_step)

    def end_episode(self, success: bool, steps: int) -> None:
        if self.recording is None:
            return
        self.recording.log("episode/success", self.rr.Scalars(float(success)))
        self.recording.log("episode/log", self.rr.TextLog(f"{'success' if success else 'failure'} after {steps} "
                                                          f"steps", level="INFO" if success else "WARN"))

    def blueprint(self):
        rrb = self.rr.blueprint
        cameras = [rrb.Spatial2DView(origin=f"camera/{name}", name=name) for name in self.cameras]
        plan = rrb.Spatial3DView(origin="world", contents=["+ world/**", "- world/denoising/**"],
                                 name="hand and planned chunk (orange: executed)")
        denoising = rrb.Spatial3DView(origin="world", name="denoising (timeline denoise_step)",
                                      contents=["+ world/hand", "+ world/hand_trail", "+ world/denoising/**"])
        plots = [rrb.TimeSeriesView(origin=origin, name=name) for origin, name in
                 [("action", "applied action"), ("state", "state"), ("policy", "sampling (ms)"),
                  ("episode/success", "success")]]
        return rrb.Blueprint(rrb.Horizontal(rrb.Vertical(*cameras, rrb.TextLogView(origin="episode/log",
                                                                                     name="episodes")),
                                            rrb.Vertical(plan, denoising), rrb.Vertical(*plots)),
                             rrb.TimePanel(timeline="step"), rrb.BlueprintPanel(state="collapsed"),
                             rrb.SelectionPanel(state="collapsed"))

    def close(self) -> None:
        """Send or write out what is logged (the .rrd file's end)."""
        if self.recording is not None:
            self.recording.flush()
            self.recording.disconnect()
            self.recording = None


class LiveView:
    """A PolicyView fed from a control loop that must never wait for it: each call queues its data and returns, and
    a thread of its own logs it (and runs `denoise`, a second sampling run). When more than `max_queued` steps wait,
    a step's data is dropped and counted (`dropped`); an episode's start and end never are. A failure in the view is
    handed to `on_error(text)` and the view goes on."""

    def __init__(self, view: PolicyView, on_error: Callable[[str], None], max_queued: int = 16):
        self.view, self.on_error, self.max_queued = view, on_error, max_queued
        self.queue: queue.Queue = queue.Queue()
        self.dropped = 0  # steps not shown because the view fell behind
        self.skipping = False  # the newest observation was dropped: so is the action that answers it
        self.thread = threading.Thread(target=self.work, name="policy-view", daemon=True)
        self.thread.start()

    def observe(self, images, state, stamp=None) -> None:
        """A new step, dropped if the view is `max_queued` behind. A step is shown whole or not at all: the action
        and chunk after a dropped observation are dropped too (shown, they would land on the step before)."""
        self.skipping = self.queue.qsize() >= self.max_queued
        if self.skipping:
            self.dropped += 1
        else:
            self.queue.put(("observe", (images, state, stamp)))

    def chunk(self, state, actions, sample_seconds, denoise=None, stamp=None) -> None:
        if not self.skipping:
            self.queue.put(("chunk", (state, actions, sample_seconds, denoise, stamp)))

    def action(self, action, step_in_chunk) -> None:
        if not self.skipping:
            self.queue.put(("action", (action, step_in_chunk)))

    def start_episode(self, task, episode, instruction, cameras, hand_step) -> None:
        self.queue.put(("start_episode", (task, episode, instruction, cameras, hand_step)))

    def describe(self, cameras, hand_step) -> None:
        self.queue.put(("describe", (cameras, hand_step)))

    def end_episode(self, success, steps) -> None:
        self.queue.put(("end_episode", (success, steps)))

    def work(self) -> None:
        while True:
            method, args = self.queue.get()
            if method == "close":
                return
            try:
                getattr(self.view, method)(*args)
            except Exception as exc:  # noqa: BLE001 - the view's problem, never the loop's
                self.on_error(f"the view could not show {method}: {type(exc).__name__}: {exc}")

    def close(self, timeout: float = 10.0) -> None:
        """Log what is queued (up to `timeout` seconds), then close the view."""
        self.queue.put(("close", ()))
        self.thread.join(timeout)
        self.view.close()


def planned_hand_path(state, chunk, hand_step: float) -> np.ndarray:
    """(len(chunk) + 1, 3): where the hand would go under the chunk's actions (n, >=3), from where it is now (the
    state's first 3 numbers): the running sum of each action's x, y, z times `hand_step`, the metres the hand moves in
    one step for an action of 1. Also what the policy node publishes on policy_node/planned_path."""
    actions = np.asarray(chunk, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[1] < 3 or len(np.asarray(state)) < 3:
        raise ValueError(f"a hand path needs a chunk of actions with x, y, z (n, >=3) and a state starting with the "
                         f"hand's x, y, z; got a chunk of shape {actions.shape} and a state of {len(state)} numbers")
    start = np.asarray(state[:3], dtype=np.float64)
    return np.vstack([start, start + np.cumsum(actions[:, :3] * hand_step, axis=0)])


def plan_hand_step(action_type: str, state_is_hand: bool, task: str, velocity_scale: float,
                   control_rate: float) -> tuple[float | None, str]:
    """Metres the hand moves in one control step for an action of 1, for drawing a chunk as a hand path, or None and
    why not. `action_type` is robot.action_type; `state_is_hand`: the state's first 3 numbers are the hand's position
    (the proprio and full protocols, or a robot state that starts with its pose); `task`: the checkpoint's."""
    if not state_is_hand:
        return None, "the state does not start with the hand's position"
    if action_type == "TwistStamped":  # velocity_scale m/s for an action of 1, one action per control period
        return velocity_scale / control_rate, ""
    if action_type != "ActionCommand":
        return None, f"a {action_type} action is not a hand velocity"
    if task.startswith("fetch-"):  # its step depends on the bridge's env settings, which the node does not know
        return None, f"the hand step of the {task} scene is the simulator bridge's, not known to the policy node"
    return HAND_STEP, ""
