"""A live view of what the policy sees and plans, in rerun (rerun-sdk, pinned in requirements.txt): `minivla eval
--view` serves a web viewer from this computer, `--view-save FILE.rrd` writes the recording (`rerun FILE.rrd` opens it).

What is logged, on two timelines: "step" counts the simulator steps of the whole evaluation (each episode follows the
one before, so none hides another), "denoise_step" counts DDIM steps the same way (each chunk's follow the chunk's
before).
    camera/NAME          each camera's image as the policy sees it (after eval.image_ablation)
    state, action        the policy's state and the applied action (plots)
    world/hand           the hand's position: the state's first 3 numbers on the simulated robots
    world/plan/chunk     each sampled chunk as the path the hand would take: the hand's position plus the running
                         sum of the chunk's xyz actions times the env's hand_step (metres per step for an action of 1)
    world/plan/executed  the part of that path executed so far, in another colour
    world/denoising      the chunk after each DDIM step, as the same kind of path, on the "denoise_step" timeline
    policy/sample_ms     how long sampling the chunk took
    episode/log          each episode's start (task, episode, instruction) and end; episode/success: 1 or 0
A blueprint lays them out: the cameras and the episodes' log, the two 3-D views, the plots.

Where the recording goes: `serve` hosts it on a gRPC server bound to 127.0.0.1 (the next port after `port`), so it
never leaves this computer, as the ROS graph's DDS stays on it by default; rerun's web viewer page (HTML and
WebAssembly, no data) is served on `port`. rerun 0.41 offers no setting for the page server's address, and binds it
to every interface: the page holds nothing, and it reads the recording from the browser's own 127.0.0.1. From another
computer: `ssh -L PORT:127.0.0.1:PORT -L PORT+1:127.0.0.1:PORT+1`.

A PolicyView with neither `serve` nor `save` does nothing, so the evaluation loop calls it without asking.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

from minivla_core.actions import HAND_STEP
from minivla_core.errors import ConfigError

PLAN_COLOUR, EXECUTED_COLOUR = [150, 150, 150], [255, 140, 0]  # grey: the whole chunk; orange: its executed part
DENOISING_COLOUR, HAND_COLOUR = [80, 140, 255], [220, 40, 40]
ACTION_NAMES = ["dx", "dy", "dz", "gripper"]  # the simulated arms' 4 numbers (hand velocity, gripper)


def check_free(port: int, what: str) -> None:
    """A ConfigError unless this computer's `port` is free to serve on (what: what would be served there)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server does: a closed one's port is free
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ConfigError(f"eval.view_port: port {port}, for {what}, is in use ({exc.strerror}); choose another "
                              f"with --view-port (the port and the next one)") from None


class PolicyView:
    """One rerun recording of an evaluation: served (`serve`, on `port` and the next), written to `save` (.rrd),
    both, or neither (then every method returns at once)."""

    def __init__(self, serve: bool = False, save: str = "", port: int = 9090):
        self.recording, self.url = None, ""
        self.step_count = self.denoise_count = 0  # the "step" and "denoise_step" timelines
        self.cameras: list[str] = []  # those of the blueprint sent
        self.hand_step = 0.0
        if not (serve or save):
            return
        try:
            import rerun as rr
        except ImportError as exc:
            raise ConfigError(f"eval.view and eval.view_save need rerun-sdk (pip install -r requirements.txt): "
                              f"{exc}") from None
        self.rr = rr
        self.recording = rr.RecordingStream("minivla_eval")
        if serve:  # rerun logs a data port in use and goes on: asked first, for an error that says so
            check_free(port, "the viewer page")
            check_free(port + 1, "the recording the page reads")
        sinks = []
        try:
            if serve:
                sinks.append(rr.GrpcServerSink(bind_ip="127.0.0.1", port=port + 1))
            if save:
                Path(save).parent.mkdir(parents=True, exist_ok=True)
                sinks.append(rr.FileSink(save))
            self.recording.set_sinks(*sinks)
            if serve:
                rr.serve_web_viewer(web_port=port, open_browser=False, connect_to=sinks[0].uri)
        except Exception as exc:  # a port in use, a file that cannot be written: rerun's own error, named
            raise ConfigError(f"the rerun view (eval.view_port {port} and {port + 1}, eval.view_save {save!r}) "
                              f"could not start: {exc}") from None
        if serve:
            self.url = f"http://127.0.0.1:{port}/?url={quote(sinks[0].uri, safe='')}"
            print(f"viewer: {self.url}", flush=True)
        self.recording.log("action", rr.SeriesLines(names=ACTION_NAMES), static=True)

    @classmethod
    def from_config(cls, eval_config) -> PolicyView:
        return cls(eval_config.view, eval_config.view_save, eval_config.view_port)

    def start_episode(self, env, episode: int, instruction: str) -> None:
        """A new episode of `env` (a SimRobot: its task, cameras and hand_step)."""
        if self.recording is None:
            return
        if env.cameras != self.cameras:  # known from the first env on
            self.cameras = list(env.cameras)
            self.recording.send_blueprint(self.blueprint())
        self.hand_step = env.hand_step
        self.recording.set_time("step", sequence=self.step_count)
        self.recording.log("episode/log", self.rr.TextLog(f"{env.task} episode {episode} starts: {instruction!r}"))

    def step(self, runner, images: np.ndarray, state: np.ndarray, action: np.ndarray) -> None:
        """One step of the loop: what the policy saw (images (cameras, H, W, 3), state), the action it applied, and
        the runner's chunk, when this step sampled a new one (runner: a PolicyRunner)."""
        if self.recording is None:
            return
        rr, log = self.rr, self.recording.log
        self.recording.set_time("step", sequence=self.step_count)
        for name, image in zip(self.cameras, images):
            log(f"camera/{name}", rr.Image(image))
        log("state", rr.Scalars(state))
        log("action", rr.Scalars(action))
        log("world/hand", rr.Points3D([state[:3]], colors=[HAND_COLOUR], radii=0.008))
        if runner.step_in_chunk == 0:
            self.log_chunk(runner, images, state)
        done = runner.step_in_chunk + 1  # actions of this chunk applied, this one included
        log("world/plan/executed", rr.LineStrips3D([self.plan_path[: done + 1]], colors=[EXECUTED_COLOUR], radii=0.004))
        self.step_count += 1

    def log_chunk(self, runner, images: np.ndarray, state: np.ndarray) -> None:
        """The chunk just sampled: its path, how long it took, and its denoising."""
        rr, log = self.rr, self.recording.log
        self.plan_path = self.hand_path(state, runner.last_chunk)
        log("world/plan/chunk", rr.LineStrips3D([self.plan_path], colors=[PLAN_COLOUR], radii=0.002))
        log("policy/sample_ms", rr.Scalars(1e3 * runner.last_sample_seconds))
        steps = runner.denoising(images, state)
        for number, chunk in enumerate(steps):
            self.recording.set_time("denoise_step", sequence=self.denoise_count)
            log("world/denoising", rr.LineStrips3D([self.hand_path(state, chunk)], colors=[DENOISING_COLOUR],
                                                   radii=0.002, labels=[f"DDIM step {number + 1}/{len(steps)}"]))
            self.denoise_count += 1
        self.recording.disable_timeline("denoise_step")  # what follows belongs to steps only

    def hand_path(self, state: np.ndarray, chunk: np.ndarray) -> np.ndarray:
        """(horizon + 1, 3): where the hand would go under the chunk's actions, from where it is now."""
        return planned_hand_path(state, chunk, self.hand_step)

    def end_episode(self, success: bool, steps: int) -> None:
        if self.recording is None:
            return
        self.recording.set_time("step", sequence=self.step_count)
        self.recording.log("episode/success", self.rr.Scalars(float(success)))
        self.recording.log("episode/log", self.rr.TextLog(f"{'success' if success else 'failure'} after {steps} "
                                                          f"steps", level="INFO" if success else "WARN"))

    def blueprint(self):
        rrb = self.rr.blueprint
        cameras = [rrb.Spatial2DView(origin=f"camera/{name}", name=name) for name in self.cameras]
        plan = rrb.Spatial3DView(origin="world", contents=["+ world/**", "- world/denoising/**"],
                                 name="hand and planned chunk (orange: executed)")
        denoising = rrb.Spatial3DView(origin="world", contents=["+ world/hand", "+ world/denoising/**"],
                                      name="denoising (timeline denoise_step)")
        plots = [rrb.TimeSeriesView(origin=origin, name=name) for origin, name in
                 [("action", "applied action"), ("state", "state"), ("policy", "sampling (ms)"),
                  ("episode/success", "success")]]
        return rrb.Blueprint(rrb.Horizontal(rrb.Vertical(*cameras, rrb.TextLogView(origin="episode/log",
                                                                                     name="episodes")),
                                            rrb.Vertical(plan, denoising), rrb.Vertical(*plots)),
                             rrb.TimePanel(timeline="step"))

    def keep_serving(self) -> None:
        """With a served viewer: wait for Ctrl-C, so the page can still read the recording after the run."""
        if not self.url:
            return
        print(f"the viewer keeps serving {self.url}: Ctrl-C to end", flush=True)
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass

    def close(self) -> None:
        """Write out what is logged (the .rrd file's end) and stop serving."""
        if self.recording is not None:
            self.recording.flush()
            self.recording.disconnect()
            self.recording = None


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
