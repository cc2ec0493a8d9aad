"""One configuration schema for the whole project: dataclasses, read from and written to YAML.

Every way in reads these classes: `minivla --config FILE.yaml` and its flags (cli.py generates them
from the fields below, with each field's comment as its help), the training loop, the evaluator, the
ROS nodes (each declares its sections as parameters: minivla_ros/params.py) and the launch files. A
YAML file holds any subset of the sections; every key must be a known field, so a typo is an error
instead of a silently ignored setting.

    env:          which Meta-World task, observation protocol, cameras, image size, episode length, seed
    model:        the network: encoder sizes, action chunk, diffusion schedule and sampler
    train / collect / eval:  `minivla train`, `collect`, `eval`
    run:          `minivla run` and `record` (the ROS graph without ros2 launch)
    bag2data:     `minivla bag2data` (demonstration bags -> a dataset)
    bridge / policy_node / expert / recorder / teleop:  the ROS nodes (policy_node runs a trained `model`)
    robot:        which standard ROS topics carry a robot's cameras, state and commands (policy node, bag2data)

A count of 0 for a sampler setting (inference_steps, n_action_steps) means "the checkpoint's own".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from minivla_core.errors import ConfigError


FULL_STATE_DIM = 39  # Meta-World's observation vector (see msg/RobotState.msg for its layout)
# observation protocol -> how many numbers the policy's state has: the full state's leading ones in simulation;
# "robot" (None) is a real robot's own state, as many numbers as its `robot` section assembles (pose, named joints).
OBSERVATIONS = {"proprio": 4, "full": FULL_STATE_DIM, "robot": None}
PRIVILEGED = "full"  # the protocol whose figures must be labelled "privileged state"


def check_observation(observation: str) -> str:
    if observation not in OBSERVATIONS:
        raise ConfigError(f"unknown observation protocol {observation!r}; choose 'proprio' (hand position and "
                          f"gripper, the default), 'full' (privileged simulator state, for comparison) or 'robot' "
                          f"(a real robot's state as its robot section names it)")
    return observation


TIMINGS = ("free", "lockstep", "timed")  # bridge.timing, policy_node.timing, run.timing
SEAMS = ("inpaint", "replace")  # policy_node.seam
ENGINES = ("onnxruntime", "torch")  # what runs the chunk sampler (minivla_core/model/engines.py)


def check_timing(timing: str, where: str) -> str:
    if timing not in TIMINGS:
        raise ConfigError(f"{where} must be 'free' (each node on its own clock, the newest command applied), "
                          f"'lockstep' (the simulator steps when the policy answers its observation) or 'timed' "
                          f"(whole chunks with due times, executed on the robot's clock), got {timing!r}")
    return timing


def state_dim_of(observation: str) -> int:
    """The state size of a simulator's protocol."""
    size = OBSERVATIONS[check_observation(observation)]
    if size is None:
        raise ConfigError("the 'robot' observation protocol is a real robot's own state (the pose and joints its "
                          "robot section names); a simulator offers 'proprio' or 'full'")
    return size


def camera_of(config: EnvConfig) -> dict:
    """The scene camera, as datasets and checkpoints record it."""
    return {"name": config.camera, "position": list(config.camera_position)}


def camera_names(config: EnvConfig) -> list[str]:
    """Every camera the policy sees, in the order of its images: the scene camera, then the extra ones."""
    return [config.camera, *config.extra_cameras]


MAX_CAMERAS = 8


def valid_extra_cameras(names) -> bool:
    """Whether `names` can be the extra cameras a dataset or checkpoint records: distinct camera names (each
    also names an array in an episode file), at most MAX_CAMERAS - 1 besides the scene camera."""
    return (isinstance(names, list) and all(isinstance(name, str) and name.isidentifier() for name in names)
            and len(set(names)) == len(names) and len(names) < MAX_CAMERAS)


def observation_label(observation: str) -> str:
    """How figures from a protocol are labelled: privileged state is always said out loud."""
    return "full (privileged state)" if observation == PRIVILEGED else observation


@dataclass
class EnvConfig:
    task: str = "push-v3"  # Meta-World v3 task name, or fetch-push (the Fetch arm: minivla_core/envs/fetch_env.py)
    # What the policy's state holds (see envs/metaworld_env.py):
    #   "proprio": what a robot knows about itself, hand x, y, z and gripper opening (4 numbers, LeRobot's
    #              agent_pos); objects and the goal reach the policy only through the camera.
    #   "full":    Meta-World's 39 numbers with object poses and the goal: privileged state, kept only as a
    #              labelled comparison.
    #   "robot":   a real robot's own state, any size: the pose and joints its `robot` section names (datasets
    #              from `minivla bag2data --robot` whose state is not a position and one gripper joint).
    observation: str = "proprio"
    camera: str = "corner2"  # MuJoCo camera; corner cameras are turned upright
    # Where the camera sits, x, y, z in metres (empty: the scene's own placement). LeRobot's Meta-World
    # protocol moves corner2 here so that the workspace fills the image; bench/results/ablation.md compares.
    camera_position: list[float] = field(default_factory=lambda: [0.75, 0.075, 0.7])
    # More views, each one more image per step at image_size, from the scene's own placement: e.g. "gripperPOV",
    # the camera in the gripper, which moves with the hand and sees depth that one fixed view cannot (a goal in
    # the air lies anywhere along its ray). A checkpoint records the cameras it needs.
    extra_cameras: list[str] = field(default_factory=list)
    image_size: int = 128  # square images, pixels per side (64 / 96 / 128 compared in bench/results/ablation.md)
    max_episode_steps: int = 500  # Meta-World's own limit
    seed: int = 0  # seeds the stream of goal/object variants (see envs/metaworld_env.py)


@dataclass
class ModelConfig:
    d_model: int = 128  # width of every encoder output and of the fused token
    d_word: int = 64  # word embedding size of the text encoder
    max_tokens: int = 32  # longer instructions are cut to this many words
    horizon: int = 8  # actions predicted per sampling call (the chunk)
    n_action_steps: int = 4  # actions of each chunk that are executed before sampling again
    # "flatten" (TinyCNN): four stride-2 convolutions to a map 1/16 of the image's side (8x8), flattened, so the
    # token still says where things are. "keypoints": convolutions keep a map at half resolution and a spatial
    # softmax turns each of `keypoints` feature channels into the (x, y) where it fires most (diffusion_policy's
    # robomimic encoder).
    # bench/results/ablation.md compares them.
    image_encoder: str = "flatten"
    keypoints: int = 32  # spatial-softmax keypoints of the "keypoints" encoder
    image_channels: int = 32  # feature channels of the "keypoints" encoder's convolutions
    denoiser_hidden: int = 256  # width of the denoising MLP
    denoiser_blocks: int = 3  # residual blocks in the denoising MLP
    diffusion_steps: int = 100  # T, the number of training noise levels
    prediction_type: str = "v"  # what the denoiser predicts: "epsilon", "sample" or "v"
    inference_steps: int = 10  # DDIM steps at run time (1..diffusion_steps)
    text_film: bool = False  # the instruction also modulates image and state features (FiLM)
    stem_words: bool = True  # "pushing" and "push" are one token (Snowball stems; see model/tokenizer.py)


# Bounds on every size in ModelConfig: far beyond anything this project trains, small enough that a
# bad config or a hostile checkpoint cannot ask for terabytes before a single weight is read.
MODEL_LIMITS = {"d_model": 4096, "d_word": 4096, "max_tokens": 1024, "horizon": 256, "n_action_steps": 256,
                "keypoints": 1024, "image_channels": 1024, "denoiser_hidden": 8192, "denoiser_blocks": 64,
                "diffusion_steps": 10000, "inference_steps": 10000}
PREDICTION_TYPES = ("epsilon", "sample", "v")
IMAGE_ENCODERS = ("keypoints", "flatten")


def check_model_config(config: ModelConfig, where: str = "model") -> ModelConfig:
    """ConfigError naming the first field out of its range."""
    for name, limit in MODEL_LIMITS.items():
        value = getattr(config, name)
        if not 1 <= value <= limit:
            raise ConfigError(f"{where}.{name} must be in 1..{limit}, got {value}")
    if config.n_action_steps > config.horizon:
        raise ConfigError(f"{where}.n_action_steps ({config.n_action_steps}) must not exceed horizon "
                          f"({config.horizon})")
    if config.inference_steps > config.diffusion_steps:
        raise ConfigError(f"{where}.inference_steps ({config.inference_steps}) must not exceed diffusion_steps "
                          f"({config.diffusion_steps})")
    if config.prediction_type not in PREDICTION_TYPES:
        raise ConfigError(f"{where}.prediction_type must be one of {PREDICTION_TYPES}, got {config.prediction_type!r}")
    if config.image_encoder not in IMAGE_ENCODERS:
        raise ConfigError(f"{where}.image_encoder must be one of {IMAGE_ENCODERS}, got {config.image_encoder!r}")
    return config


@dataclass
class TrainConfig:
    dataset: str = "data/push-v3"  # dataset folder (minivla collect or bag2data)
    out_dir: str = "runs/push-v3"  # run folder for best.pt, last.pt, loss.png, history.json
    epochs: int = 60  # passes over the training episodes
    batch_size: int = 128  # observations per optimisation step
    noise_samples_per_obs: int = 4  # diffusion targets per encoded observation (cheap extra signal)
    lr: float = 3e-4  # AdamW learning rate, after warm-up; decays to zero along a cosine
    weight_decay: float = 1e-6  # AdamW weight decay
    warmup_steps: int = 200  # optimisation steps of linear learning-rate warm-up
    ema_decay: float = 0.995  # evaluation and checkpoints use the EMA weights
    val_fraction: float = 0.1  # share of episodes held out for validation
    # Random-shift augmentation, pixels (0 disables). Off by default: the camera is fixed, so where the puck
    # is in the image says where it is on the table; shifting by 4 px (the puck's layouts span about 12 px
    # at 64 px) taught the policy to ignore its camera (bench/results/ablation.md).
    image_shift: int = 0
    word_dropout: float = 0.0  # share of instruction words replaced by <unk> in training (robust to new words)
    # share of samples relabelled with an instruction of a task in another scene and a hold-still
    # target: the policy learns that the words, not the scene alone, say what to do
    foreign_instructions: float = 0.0
    device: str = "cpu"  # "cpu" or "cuda"
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    seed: int = 0  # weights, batches and noise
    resume: str = ""  # continue from this last.pt (empty: start afresh)


@dataclass
class CollectConfig:
    out: str = "data/push-v3"  # dataset folder; episodes are appended if it exists
    episodes: int = 100  # successful episodes to keep, per task
    max_attempts_factor: float = 2.0  # give up after episodes * factor attempts
    tasks: list[str] = field(default_factory=list)  # several tasks into one dataset (empty: env.task)
    paraphrases: bool = False  # rotate each task's training paraphrases over its episodes
    steps_after_success: int = 0  # keep recording the expert this many steps past its first success


@dataclass
class EvalConfig:
    checkpoint: str = "checkpoints/push_v3.pt"  # the policy to evaluate (or to describe: minivla info)
    episodes: int = 50  # per task
    seed: int = 1000  # variants for evaluation; differs from collection's seed on purpose
    noise_seed: int = 0  # seed of the sampler's noise (as policy_node.seed); another seed: other chunks, same layouts
    tasks: list[str] = field(default_factory=list)  # empty: the task(s) the checkpoint was trained on
    instructions: str = "plain"  # "plain", "held_out" (paraphrases never trained on), "other_task"
    instruction: str = ""  # one instruction for every episode (empty: as `instructions` says)
    image_ablation: str = "none"  # "black", "frozen" or "shuffled": what the policy sees instead (evaluate.py)
    inference_steps: int = 0  # DDIM steps per sampling call (0 = the checkpoint's)
    n_action_steps: int = 0  # actions executed per chunk (0 = the checkpoint's)
    video_dir: str = ""  # when set, one mp4 per episode is written there
    json: str = ""  # when set, results are written there as JSON
    threads: int = 1  # torch CPU threads for the policy (1 = a laptop-like budget)
    engine: str = "onnxruntime"  # what runs the sampler: "onnxruntime" or "torch" (TorchScript); the same actions
    # > 0: timed execution on a simulated robot clock (minivla_core/timed.py), as the graph's timed mode runs a real
    # robot, with every sampling call taking exactly this many seconds, from observation to the chunk's arrival.
    # 0: the classic loop (each chunk sampled at once, from the observation just before its first action)
    latency: float = 0.0
    step_rate: float = 20.0  # with latency: the robot's control steps per second
    seam: str = "inpaint"  # with latency: how a new chunk meets the one before (as policy_node.seam)


@dataclass
class RunConfig:
    """`minivla run` and `minivla record`: the ROS graph started without ros2 launch (minivla_ros/bringup.py)."""

    episodes: int = 10  # episodes to run (or record) and report
    params_file: str = ""  # ROS parameter file of the nodes (empty: the package's config/sim_policy.yaml)
    json: str = ""  # when set, `minivla run` writes its results there as JSON
    # bridge.timing and policy_node.timing of the graph it starts: "lockstep" (the default: an evaluation whose
    # figures do not depend on timing), "timed" (the robot's clock executes whole timed chunks, sampled ahead: what
    # a real robot runs) or "free" (both nodes on their own timers, the newest command applied)
    timing: str = "lockstep"


@dataclass
class Bag2DataConfig:
    """`minivla bag2data`: demonstration bags -> a dataset (minivla_ros/bag2data.py)."""

    bags: list[str] = field(default_factory=list)  # rosbag2 folders (MCAP or sqlite3) or .mcap files
    out: str = "data/from-bags"  # dataset folder (created, or appended to)
    keep_failed: bool = False  # keep episodes that did not succeed
    # A config file whose `robot` section says which topics of the bags hold cameras, state and commands: any
    # robot's bags, read through the robot interface (minivla_ros/robot_bags.py). Empty: bags of `minivla record`.
    robot: str = ""
    # robot bags: observations per second in the dataset (inputs resampled to this rate); 0: one per frame of the first
    # camera (a robot that steps once per frame, as the simulator bridge does)
    rate: float = 20.0
    # Robot bags: an episode ends after this many seconds without a command (0: one episode per bag), or at each
    # message on episode_topic when that is set.
    episode_gap: float = 1.0
    episode_topic: str = ""
    instruction_topic: str = "/instruction"  # robot bags: std_msgs/String with the episode's instruction
    instruction: str = ""  # robot bags: the instruction of episodes with none on instruction_topic
    task: str = "robot"  # robot bags: the task name the episodes get in the dataset


@dataclass
class BridgeConfig:
    """The simulator bridge node (minivla_ros/sim_bridge.py); the env itself comes from EnvConfig."""

    step_rate: float = 20.0  # simulator steps per second
    command_timeout: float = 0.5  # seconds without a new action command before the bridge says it is holding
    episodes: int = 0  # stop stepping after this many episodes (0 = run forever)
    min_subscribers: int = 0  # hold the first episode until this many nodes subscribe to robot_state
    # "minivla": every topic, this package's messages (robot_state, action_command, episode_status) and the standard
    # ones. "standard": only standard messages, as a real robot's drivers offer: camera, ee_pose, joint_states in,
    # cmd_vel and gripper_command out; sim/scene_state (std_msgs/Float64MultiArray) for the scripted expert, the
    # episode number on `episode` and each episode's result on /diagnostics.
    interface: str = "minivla"
    # "free": it steps at step_rate, applying the newest command (a robot's clock). "lockstep": it steps when a command
    # answers its newest observation (a command's stamp names the observation it answers), as fast as the policy
    # answers; after command_timeout without an answer it takes a step holding still and says so. "timed": it steps
    # at step_rate, applying the action due then from the timed chunks on action_chunk (minivla_core/timed.py)
    timing: str = "free"
    # Actuation noise: the standard deviation (in action units; 1 = a full step) of Gaussian noise added to the motion
    # of every applied command, seeded by layout. Demonstrations recorded with it show the expert correcting the
    # drift it causes, from states a clean expert never visits (DART); 0 for evaluation
    motion_noise: float = 0.0


@dataclass
class PolicyNodeConfig:
    """The policy node (minivla_ros/policy_node.py)."""

    checkpoint: str = "checkpoints/push_v3.pt"  # the policy (relative: working directory, then package share)
    control_rate: float = 20.0  # action commands per second
    inference_steps: int = 0  # DDIM steps per sampling call (0 = the checkpoint's)
    n_action_steps: int = 0  # actions executed per chunk (0 = the checkpoint's)
    stale_after: float = 0.25  # seconds after which an image or state counts as stale
    instruction: str = ""  # initial instruction (empty = wait for one on the instruction topic)
    threads: int = 1  # torch CPU threads for sampling
    engine: str = "onnxruntime"  # what runs the sampler: "onnxruntime" or "torch" (TorchScript); the same actions
    seed: int = 0  # sampler noise seed
    # A managed (lifecycle) node: configure loads and checks the checkpoint, activate starts commanding,
    # deactivate holds. True: it configures and activates itself at start (what `minivla run` wants); false: it
    # waits for `ros2 lifecycle set /policy_node configure` and `activate` (what a real robot's bring-up wants).
    autostart: bool = True
    dry_run: bool = False  # compute and log actions, command nothing
    # "free": one command per control_rate tick from the newest inputs. "lockstep": one command per observation
    # (images and state of one stamp), stamped with that observation's stamp, for a bridge in lockstep. "timed":
    # whole chunks with each action's due time on action_chunk, sampled ahead, as the chunk before runs out
    # (minivla_core/timed.py), for a robot side that executes them on its clock (bridge.timing timed)
    timing: str = "free"
    # timed: how a new chunk meets the one before. "inpaint": the actions due while it is sampled are kept from the
    # chunk before and the rest inpainted to continue them (real-time chunking); "replace": sampled freely
    seam: str = "inpaint"
    # timed: seconds added to every sampling call before its chunk is published, as if inference were that much
    # slower (benchmarks: bench/bench_graph.py); 0 on a robot
    extra_delay: float = 0.0


@dataclass
class RobotConfig:
    """How a policy meets a robot: which topics carry its cameras, its state and its commands, in which messages.
    The policy node reads and writes them; `minivla bag2data --robot` reads them from any robot's bags
    (minivla_ros/interfaces.py turns each message into numbers). Topic names are relative, so a node's
    namespace and remapping apply as usual. The defaults are the simulator bridge's own messages."""

    # One camera topic per camera the checkpoint sees, scene camera first (empty: the simulator's, camera/image_raw
    # and camera/<name>/image_raw for each extra camera). Images of any size are cropped to their centre square
    # and resized to the checkpoint's image size.
    camera_topics: list[str] = field(default_factory=list)
    camera_type: str = "Image"  # "Image" (rgb8, bgr8, rgba8, bgra8, mono8) or "CompressedImage" (jpeg, png)
    # "RobotState": ours, on robot_state, of the checkpoint's observation protocol. "PoseAndJoints": standard
    # messages; the state is the position x, y, z of the geometry_msgs/PoseStamped on state_pose_topic (empty:
    # none), then the positions of state_joints, by name, from the sensor_msgs/JointState on state_joint_topic.
    state_type: str = "RobotState"
    state_pose_topic: str = "ee_pose"  # PoseStamped of the hand (PoseAndJoints; empty: no pose in the state)
    state_joint_topic: str = "joint_states"  # JointState (PoseAndJoints; empty: no joints in the state)
    state_joints: list[str] = field(default_factory=lambda: ["gripper"])  # joints whose positions end the state
    # How actions leave. "ActionCommand": ours, on action_command, with the chunk each action came from.
    # "TwistStamped": action x, y, z times velocity_scale as linear velocity in action_frame (MoveIt Servo's input).
    # "JointTrajectory": one point, the action numbers as positions of action_joints, due one control period
    # later (ros2_control's trajectory controller). "Float64MultiArray": the numbers as they are (ros2_control's
    # forward command controllers). For the three standard types the gripper number goes to gripper_topic.
    action_type: str = "ActionCommand"
    action_topic: str = "cmd_vel"  # the topic of the standard command types
    action_frame: str = "world"  # TwistStamped: the frame the velocity is expressed in
    # TwistStamped: metres per second for an action of 1 (Meta-World: 1 cm per simulator step at 20 steps/s)
    velocity_scale: float = 0.2
    action_joints: list[str] = field(default_factory=list)  # JointTrajectory: the joint of each action number
    # std_msgs/Float64 with the action's last number, the gripper: -1 open .. 1 closed (empty: the gripper
    # number stays in the main command).
    gripper_topic: str = "gripper_command"
    # The largest absolute action allowed in each dimension (empty: the action space's own, 1 each); an action beyond
    # is never published: the node logs it and holds.
    action_limits: list[float] = field(default_factory=list)
    max_speed: float = 0.0  # TwistStamped: the fastest hand speed published, m/s (0: velocity_scale's own limit)
    # std_msgs/Header marking each episode's start in a simulator (the bridge's `episode` with bridge.interface
    # standard): each one drops the rest of the current action chunk, planned for the scene before it (empty: none).
    episode_topic: str = ""


@dataclass
class TeleopConfig:
    """`minivla teleop`, the keyboard teleop node (minivla_ros/teleop.py)."""

    rate: float = 20.0  # commands per second
    speed: float = 0.1  # hand speed in m/s when a direction key is pressed (+ and - change it)
    max_speed: float = 0.2  # + never goes beyond this (the simulated arm's limit at 20 steps/s)


@dataclass
class ExpertNodeConfig:
    """The expert node (minivla_ros/expert_node.py); it follows the task in episode_status."""

    task: str = "push-v3"  # task of the expert until episode_status names one


@dataclass
class RecorderConfig:
    """The recorder node (minivla_ros/recorder.py)."""

    out: str = "bags/demos"  # rosbag2 folder to create (must not exist yet)
    storage: str = "mcap"  # "mcap" or "sqlite3"
    instruction: str = ""  # published with the demonstrations (empty: the task's own, e.g. 'push the puck to the goal')
    # The topics to record, names from the README's topic table (empty: the demonstration topics of this package's
    # messages, minivla_ros/graph.py RECORDED); e.g. camera/image_raw, ee_pose, joint_states, cmd_vel, ... for a
    # demonstration in standard messages only.
    topics: list[str] = field(default_factory=list)


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    bag2data: Bag2DataConfig = field(default_factory=Bag2DataConfig)
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    policy_node: PolicyNodeConfig = field(default_factory=PolicyNodeConfig)
    expert: ExpertNodeConfig = field(default_factory=ExpertNodeConfig)
    recorder: RecorderConfig = field(default_factory=RecorderConfig)
    robot: RobotConfig = field(default_factory=RobotConfig)
    teleop: TeleopConfig = field(default_factory=TeleopConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Config":
        return _build(cls, data or {}, "config")


def _build(cls, data: Any, where: str):
    """Build dataclass `cls` from a mapping, recursing into nested dataclasses, rejecting unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(fields)}")
    values = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            values[name] = _build(type(default), value, f"{where}.{name}")
        else:
            values[name] = _coerce(value, type(default), f"{where}.{name}", str(fields[name].type))
    return cls(**values)


def _coerce(value: Any, kind: type, where: str, declared: str = "") -> Any:
    if kind is list:
        if "float" in declared:  # list[float]
            if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                      for v in value):
                raise ConfigError(f"{where}: expected a list of numbers, got {value!r}")
            return [float(v) for v in value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return list(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def load_config(path: str | Path | None = None) -> Config:
    """Defaults, overridden by the YAML file at `path` when given."""
    return Config() if path is None else Config.from_dict(read_config_file(path))


def read_config_file(path: str | Path) -> dict:
    """The sections a YAML config file sets, as written (not yet checked against the schema)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections, got {type(data).__name__}")
    return data or {}


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


# --- the schema as data: what cli.py, params.py and the launch files generate their interfaces from --------

# Fields whose value is one of a few names (offered as choices on the command line).
CHOICES = {"env.observation": tuple(OBSERVATIONS), "model.image_encoder": IMAGE_ENCODERS,
           "model.prediction_type": PREDICTION_TYPES, "train.device": ("cpu", "cuda"),
           "eval.instructions": ("plain", "held_out", "other_task"),
           "eval.image_ablation": ("none", "black", "frozen", "shuffled"), "recorder.storage": ("mcap", "sqlite3"),
           "bridge.interface": ("minivla", "standard"), "bridge.timing": TIMINGS, "policy_node.timing": TIMINGS,
           "policy_node.seam": SEAMS, "eval.seam": SEAMS, "run.timing": TIMINGS,
           "eval.engine": ENGINES, "policy_node.engine": ENGINES,
           "robot.camera_type": ("Image", "CompressedImage"), "robot.state_type": ("RobotState", "PoseAndJoints"),
           "robot.action_type": ("ActionCommand", "TwistStamped", "JointTrajectory", "Float64MultiArray")}


def list_item_type(field: dataclasses.Field) -> type:
    """float for a list[float] field (camera_position), str for the other list fields."""
    return float if "float" in str(field.type) else str


def field_of(path: str) -> tuple[dataclasses.Field, Any]:
    """("section.field") -> (its dataclasses.Field, its default value); ConfigError for an unknown name."""
    section, _, name = path.partition(".")
    sections = {f.name: f for f in dataclasses.fields(Config)}
    if section not in sections:
        raise ConfigError(f"unknown config section {section!r} in {path!r}; sections are {sorted(sections)}")
    defaults = getattr(Config(), section)
    fields = {f.name: f for f in dataclasses.fields(defaults)}
    if name not in fields:
        raise ConfigError(f"unknown config field {path!r}; {section} has {sorted(fields)}")
    return fields[name], getattr(defaults, name)


def field_docs() -> dict[str, str]:
    """"section.field" -> the comment written beside (or just above) the field in this file: the help text of
    the command-line flags, so a field is documented once, where it is declared."""
    section_of = {type(getattr(Config(), f.name)).__name__: f.name for f in dataclasses.fields(Config)}
    docs, section, above = {}, None, []
    for line in Path(__file__).read_text().splitlines():
        if line.startswith("class "):
            section, above = section_of.get(line[6:].split("(")[0].split(":")[0]), []
        elif section and line.startswith("    # "):
            above.append(line.strip()[2:])
        elif section and line.startswith("    ") and not line.startswith("     ") and ": " in line and " = " in line:
            name = line.split(":")[0].strip()
            comment = line.split("  # ", 1)[1] if "  # " in line else " ".join(above)
            docs[f"{section}.{name}"] = " ".join(comment.split())
            above = []
        else:
            above = []
    return docs


def set_value(data: dict, path: str, value: Any) -> None:
    """Put `value` at "section.field" of a nested mapping such as a YAML config's."""
    field_of(path)
    section, name = path.split(".", 1)
    data.setdefault(section, {})
    if not isinstance(data[section], dict):
        raise ConfigError(f"config section {section}: expected a mapping, got {data[section]!r}")
    data[section][name] = value

