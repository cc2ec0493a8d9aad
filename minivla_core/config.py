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

Checks live here too: every section's validate() checks each field's type, its choices (CHOICES), its range
(RANGES) and the rules between fields, and raises a ConfigError naming the field. Config.from_dict (hence the CLI
and every config file), the nodes' declare_section and validated_replace (`ros2 param set`) all run it. Text from
a command line or a launch argument becomes a field's value in one place, value_from_text, and a value becomes
`-p name:=TEXT` in its reverse, text_from_value. config/default.yaml is written from this file
(`python -m minivla_core.config --write-defaults config/default.yaml`) and a test keeps the two equal.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from minivla_core.errors import ConfigError
from minivla_core.timing import TIMINGS as TIMING_MODES


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


TIMINGS = tuple(TIMING_MODES)  # bridge.timing, policy_node.timing, run.timing (minivla_core/timing.py)
SEAMS = ("inpaint", "replace")  # policy_node.seam
ENGINES = ("onnxruntime", "torch")  # what runs the chunk sampler (minivla_core/model/engines.py)


# The three roles of a layout seed (env.seed, eval.seed), one per seed, by its range (docs/evaluation.md):
#   collection  0..999       layouts demonstrations are recorded on: what a policy is trained on
#   validation  1000..1999   layouts every choice is made on: recipe, image size, camera, the epoch to keep
#   test        2000 and up  layouts a checkpoint's figures are reported on, once: never used to choose anything
# A figure from a validation seed is a validation figure, not a result; evaluating on a collection seed is refused.
SEED_ROLES = {"collection": range(0, 1000), "validation": range(1000, 2000), "test": range(2000, 2**32)}
COLLECTION_SEED, VALIDATION_SEED, TEST_SEED = 0, 1000, 2000  # each role's first seed, used unless a run says otherwise
SEED_ROLE_USES = {"collection": "the layouts demonstrations are recorded on",
                  "validation": "used to choose the recipe, image size and epoch",
                  "test": "never used to choose anything"}


def seed_role(seed: int) -> str:
    """The role of a layout seed: "collection", "validation" or "test" (SEED_ROLES)."""
    for role, seeds in SEED_ROLES.items():
        if seed in seeds:
            return role
    raise ConfigError(f"seed {seed} is no layout seed (0..{2**32 - 1})")


def figure_label(seed: int) -> str:
    """What a success rate measured on the layouts of `seed` is, said beside every such figure."""
    role = seed_role(seed)
    kind = "collection layouts, not a figure" if role == "collection" else f"{role} figure"
    return f"{kind} (seed {seed}, {SEED_ROLE_USES[role]})"


def check_seed_role(seed: int, role: str, where: str) -> int:
    """`seed` if it plays `role`; else a ConfigError naming `where` and the seeds that do."""
    if seed_role(seed) != role:
        seeds = SEED_ROLES[role]
        top = "" if seeds.stop == 2**32 else f"..{seeds.stop - 1}"
        raise ConfigError(f"{where} {seed} is a {seed_role(seed)} seed ({SEED_ROLE_USES[seed_role(seed)]}); "
                          f"{role} takes seeds {seeds.start}{top or ' and up'}")
    return seed


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


class Section:
    """What every config section shares: validate()."""

    def validate(self, where: str | None = None):
        """This section, if each field has its type, one of its CHOICES and a value in its RANGES, and the fields
        agree with each other (check_together); else a ConfigError naming the first field that does not. `where`
        names the section in messages (default: its name in Config, e.g. "policy_node")."""
        section = section_name(type(self))
        where = where or section
        for f in dataclasses.fields(self):
            value = _typed(f.type, getattr(self, f.name), f"{where}.{f.name}")
            check_value(f"{section}.{f.name}", value, f"{where}.{f.name}")
        self.check_together(where)
        return self

    def check_together(self, where: str) -> None:
        """The rules that tie this section's fields to each other (none, unless a section says otherwise)."""


@dataclass
class EnvConfig(Section):
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
    max_episode_steps: int = 500  # steps before an episode ends unfinished (500: Meta-World's own limit)
    # seeds the stream of goal/object layouts (see envs/metaworld_env.py); its range is its role: 0-999 collection,
    # 1000-1999 validation, 2000 and up test (config.SEED_ROLES)
    seed: int = 0

    def check_together(self, where: str) -> None:
        if len(self.camera_position) not in (0, 3):
            raise ConfigError(f"{where}.camera_position must be 3 numbers (x, y, z) or empty, got "
                              f"{self.camera_position}")
        if not valid_extra_cameras(self.extra_cameras) or self.camera in self.extra_cameras:
            raise ConfigError(f"{where}.extra_cameras must be at most {MAX_CAMERAS - 1} distinct camera names, "
                              f"without {where}.camera ({self.camera!r}), got {self.extra_cameras}")


@dataclass
class ModelConfig(Section):
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

    def check_together(self, where: str) -> None:
        if self.n_action_steps > self.horizon:
            raise ConfigError(f"{where}.n_action_steps ({self.n_action_steps}) must not exceed horizon "
                              f"({self.horizon})")
        if self.inference_steps > self.diffusion_steps:
            raise ConfigError(f"{where}.inference_steps ({self.inference_steps}) must not exceed diffusion_steps "
                              f"({self.diffusion_steps})")


# Bounds on every size in ModelConfig: far beyond anything this project trains, small enough that a
# bad config or a hostile checkpoint cannot ask for terabytes before a single weight is read.
MODEL_LIMITS = {"d_model": 4096, "d_word": 4096, "max_tokens": 1024, "horizon": 256, "n_action_steps": 256,
                "keypoints": 1024, "image_channels": 1024, "denoiser_hidden": 8192, "denoiser_blocks": 64,
                "diffusion_steps": 10000, "inference_steps": 10000}
PREDICTION_TYPES = ("epsilon", "sample", "v")
IMAGE_ENCODERS = ("keypoints", "flatten")


def check_model_config(config: ModelConfig, where: str = "model") -> ModelConfig:
    """ConfigError naming the first field out of its range (MODEL_LIMITS) or choices: config.validate(where), for
    a checkpoint's model_config as for the model section."""
    return config.validate(where)


@dataclass
class TrainConfig(Section):
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
    # torch.compile the training step: 1197 -> 1547 samples/s on 2 CPU cores at the MT50 recipe
    # (bench/results/train_throughput.md), after a compile of seconds to minutes; needs a C compiler on CPUs
    compile: bool = False
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    seed: int = 0  # weights, batches and noise
    resume: str = ""  # continue from this last.pt (empty: start afresh)


@dataclass
class CollectConfig(Section):
    out: str = "data/push-v3"  # dataset folder; episodes are appended if it exists
    # successful episodes each task should have in the folder: those it already holds count, so running the same
    # command again finishes an interrupted collection, and a larger number adds episodes on new layouts
    episodes: int = 100
    max_attempts_factor: float = 2.0  # give up after episodes * factor attempts
    # several tasks into one dataset (empty: env.task); "mt50" or "mt10" stands for the suite's tasks
    tasks: list[str] = field(default_factory=list)
    paraphrases: bool = False  # rotate each task's training paraphrases over its episodes
    # label each episode with LeRobot's description of its task ("Open a drawer"), the instruction of LeRobot's
    # Meta-World protocol and dataset, instead of ours (envs/metaworld_suites.py)
    lerobot_descriptions: bool = False
    steps_after_success: int = 0  # keep recording the expert this many steps past its first success
    # processes collecting at once, each running whole tasks (one writer, this process, appends their episodes);
    # more than one pays off with several tasks and cores
    workers: int = 1

    def check_together(self, where: str) -> None:
        if self.paraphrases and self.lerobot_descriptions:
            raise ConfigError(f"{where}.paraphrases and {where}.lerobot_descriptions each choose the instructions: "
                              f"set one of them")


@dataclass
class EvalConfig(Section):
    checkpoint: str = "checkpoints/push_v3.pt"  # the policy to evaluate (or to describe: minivla info)
    episodes: int = 50  # per task
    # Layouts to evaluate on; the seed's range is the figure's role: 1000-1999 validation (every choice is made on
    # them), 2000 and up test (reported once per checkpoint, never used to choose). 0-999 (collection) is refused.
    seed: int = VALIDATION_SEED
    noise_seed: int = 0  # seed of the sampler's noise (as policy_node.seed); another seed: other chunks, same layouts
    tasks: list[str] = field(default_factory=list)  # tasks to evaluate (empty: those the checkpoint was trained on)
    # A Meta-World suite under LeRobot's protocol, with the difficulty-group table (docs/evaluation.md): "mt50",
    # "mt10" or task names separated by commas (empty: no suite; eval.tasks says what to evaluate)
    suite: str = ""
    # "plain", "held_out" (paraphrases never trained on), "other_task", "lerobot" (LeRobot's task description: the
    # instruction of its Meta-World protocol, for checkpoints trained on LeRobot's data or with
    # collect.lerobot_descriptions)
    instructions: str = "plain"
    instruction: str = ""  # one instruction for every episode (empty: as `instructions` says)
    image_ablation: str = "none"  # "black", "frozen" or "shuffled": what the policy sees instead (evaluate.py)
    inference_steps: int = 0  # DDIM steps per sampling call (0 = the checkpoint's)
    n_action_steps: int = 0  # actions executed per chunk (0 = the checkpoint's)
    video_dir: str = ""  # when set, one mp4 per episode is written there
    json: str = ""  # when set, results are written there as JSON
    threads: int = 1  # torch CPU threads for the policy (1 = a laptop-like budget)
    # processes evaluating tasks at once, each running whole tasks with its own copy of the policy (eval.threads
    # each); the figures are the same as with one, since a task's layouts and sampler noise depend only on the seeds
    workers: int = 1
    engine: str = "onnxruntime"  # what runs the sampler: "onnxruntime" or "torch" (TorchScript); the same actions
    # > 0: timed execution on a simulated robot clock (minivla_core/timed.py), as the graph's timed mode runs a real
    # robot, with every sampling call taking exactly this many seconds, from observation to the chunk's arrival.
    # 0: the classic loop (each chunk sampled at once, from the observation just before its first action)
    latency: float = 0.0
    step_rate: float = 20.0  # with latency: the robot's control steps per second
    seam: str = "inpaint"  # with latency: how a new chunk meets the one before (as policy_node.seam)
    # Show what the policy sees and plans, live, in a rerun web viewer (minivla_core/view.py) served from this
    # computer: camera images, state, actions, each planned chunk as the hand's path, each DDIM step's chunk. The
    # page's address is printed; the command waits for Ctrl-C after the results, so the page can still be read
    view: bool = False
    view_save: str = ""  # when set, the same recording is written to this rerun .rrd file (view.py)
    # with view: the viewer page's port; the recording is served on the next port, to this computer only (127.0.0.1)
    view_port: int = 9090

    def check_together(self, where: str) -> None:
        if seed_role(self.seed) == "collection":
            raise ConfigError(f"{where}.seed {self.seed} is a collection seed (0..999: the layouts demonstrations are "
                              f"recorded on): a success rate there measures the training layouts, not the policy. "
                              f"Evaluate on a validation seed ({VALIDATION_SEED}..1999) to choose, or a test seed "
                              f"({TEST_SEED} and up) to report")
        if self.suite and self.tasks:
            raise ConfigError(f"{where}.suite ({self.suite!r}) and {where}.tasks ({', '.join(self.tasks)}) both say "
                              f"what to evaluate: give one (a list of tasks as a suite: --suite TASK,TASK)")
        if self.suite and self.json.endswith(".md"):
            raise ConfigError(f"{where}.json {self.json} ends in .md, where a suite writes its markdown table (the "
                              f"same name, .md): name it .json")
        if self.view_save and not self.view_save.endswith(".rrd"):
            raise ConfigError(f"{where}.view_save {self.view_save}: a rerun recording is an .rrd file: name it .rrd")
        if (self.view or self.view_save) and self.workers > 1:
            raise ConfigError(f"{where}.view and {where}.view_save show one process's episodes, and {where}.workers "
                              f"{self.workers} runs tasks in {self.workers} processes: view with {where}.workers 1")


@dataclass
class RunConfig(Section):
    """`minivla run` and `minivla record`: the ROS graph started without ros2 launch (minivla_ros/bringup.py)."""

    episodes: int = 10  # episodes to run (or record) and report
    params_file: str = ""  # ROS parameter file of the nodes (empty: the package's config/sim_policy.yaml)
    json: str = ""  # when set, `minivla run` writes its results there as JSON
    # The timing mode of both nodes (bridge.timing and policy_node.timing): "lockstep" (the simulator steps when the
    # policy answers: an evaluation whose figures do not depend on timing), "timed" (the robot's clock executes whole
    # timed chunks, sampled ahead: what a real robot runs) or "free" (both nodes on their own timers, the newest
    # command applied)
    timing: str = "lockstep"
    # `minivla run`: serve a rerun web viewer from this computer (127.0.0.1) and stream the policy node's view to it
    # (policy_node.view_url); the page's address is printed, and the command waits for Ctrl-C after the results
    view: bool = False
    view_port: int = 9090  # with view: the viewer page's port; the recording is served on the next port


@dataclass
class Bag2DataConfig(Section):
    """`minivla bag2data`: demonstration bags -> a dataset (minivla_ros/bag2data.py)."""

    bags: list[str] = field(default_factory=list)  # rosbag2 folders (MCAP or sqlite3) or .mcap files
    out: str = "data/from-bags"  # dataset folder (created, or appended to)
    # Keep episodes whose result says they failed (robot bags: an episode with no result on success_topic is kept,
    # as "success unknown")
    keep_failed: bool = False
    # A config file read as --config reads one (all its sections: robot, bag2data, env; what --config, --set and the
    # flags give wins): any robot's bags, read through its `robot` section (minivla_ros/robot_bags.py). Empty: a
    # `robot` section given otherwise (--config, --set), else bags of `minivla record`.
    robot: str = ""
    # robot bags: observations per second in the dataset (inputs resampled to this rate); 0: one per frame of the first
    # camera (a robot that steps once per frame, as the simulator bridge does)
    rate: float = 20.0
    # Robot bags: an episode ends after this many seconds without a command (0: one episode per bag), or at each
    # message on episode_topic when that is set.
    episode_gap: float = 1.0
    # Robot bags: each message on this topic starts an episode; observations before the first belong to none. A bag
    # without a message on it is refused (empty: no markers; episodes split by episode_gap)
    episode_topic: str = ""
    # Robot bags: the oldest an input (camera, pose, joints) may be at an observation, and a command at the next camera
    # frame, in seconds (a velocity controller holds a command until its time-out); at a fixed rate, never less than
    # two ticks. An observation with an older input, or no command this fresh, is no step.
    stale_after: float = 0.25
    # Robot bags: each episode's result: a diagnostic_msgs/DiagnosticArray with a status whose values hold `success`
    # (true or false), as the simulator bridge's `sim_bridge: episode`, or a std_msgs/Bool. An episode takes the
    # newest result that comes while it is open (or right after it ends); one with none is kept as "success unknown".
    success_topic: str = "/diagnostics"
    instruction_topic: str = "/instruction"  # robot bags: std_msgs/String with the episode's instruction
    instruction: str = ""  # robot bags: the instruction of episodes with none on instruction_topic
    task: str = "robot"  # robot bags: the task name the episodes get in the dataset


@dataclass
class LeRobotConfig(Section):
    """`minivla export-lerobot` and `minivla import-lerobot`: our datasets to and from LeRobot dataset v3.0
    (minivla_core/data/lerobot.py, docs/lerobot.md)."""

    dataset: str = ""  # our dataset folder: what export-lerobot reads, and what import-lerobot writes (or appends to)
    lerobot_dataset: str = ""  # a LeRobot dataset v3.0 folder: what export-lerobot writes (new), import-lerobot reads
    # export-lerobot: frames per second written to info.json (our datasets do not record it). 0: the rate the
    # episodes recorded (imported ones do), else 80 for Meta-World tasks (its simulation steps 80 times a second)
    fps: int = 0


@dataclass
class BridgeConfig(Section):
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

    def check_together(self, where: str) -> None:
        if self.timing == "timed" and self.interface != "minivla":
            raise ConfigError(f"{where}.timing timed takes chunks on action_chunk (minivla_ros/ActionChunk): use "
                              f"{where}.interface minivla")


@dataclass
class PolicyNodeConfig(Section):
    """The policy node (minivla_ros/policy_node.py)."""

    checkpoint: str = "checkpoints/push_v3.pt"  # the policy (relative: working directory, then package share)
    # free: action commands per second (the control timer); timed: actions per second within each chunk (their due
    # times 1 / control_rate apart; must equal bridge.step_rate); lockstep: not used (one command per observation)
    control_rate: float = 20.0
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
    # Publish each chunk the policy samples as the path the hand would take, a visualization_msgs/MarkerArray on
    # policy_node/planned_path in robot.action_frame, for RViz or Foxglove (docs/topics.md). Only for a state that
    # starts with the hand's position and a hand-velocity action (ActionCommand on Meta-World, TwistStamped); the
    # node says at activation when it cannot. False: nothing is computed
    publish_plan: bool = False
    # Stream what the policy sees and plans (camera images, state, actions, each chunk as the hand's path, each DDIM
    # step's chunk: minivla_core/view.py) to a rerun viewer at this gRPC address, e.g. rerun+http://127.0.0.1:9876/proxy
    # for a `rerun` viewer started on this computer (`minivla run --view` starts one and sets this). Logged on a thread
    # of its own, never in the control loop's way. Empty: nothing is computed
    view_url: str = ""
    view_save: str = ""  # when set, the same recording is written to this rerun .rrd file (in the node's process)
    # "free": one command per control_rate tick from the newest inputs. "lockstep": one command per observation
    # (images and state of one stamp), stamped with that observation's stamp, for a bridge in lockstep. "timed":
    # whole chunks with each action's due time on action_chunk, sampled ahead, as the chunk before runs out
    # (minivla_core/timed.py), for a robot side that executes them on its clock (bridge.timing timed)
    timing: str = "free"
    # timed: how a new chunk meets the one before. "inpaint": the actions due while it is sampled are kept from the
    # chunk before and the rest inpainted to continue them (real-time chunking); "replace": sampled freely
    seam: str = "inpaint"

    def check_together(self, where: str) -> None:
        if self.view_url and not (self.view_url.startswith(("rerun://", "rerun+http://", "rerun+https://"))
                                  and self.view_url.endswith("/proxy")):
            raise ConfigError(f"{where}.view_url {self.view_url!r} is not a rerun viewer's gRPC address: "
                              f"rerun+http://HOST:PORT/proxy (a `rerun` viewer started here listens on "
                              f"rerun+http://127.0.0.1:9876/proxy)")
        if self.view_save and not self.view_save.endswith(".rrd"):
            raise ConfigError(f"{where}.view_save {self.view_save}: a rerun recording is an .rrd file: name it .rrd")


@dataclass
class RobotConfig(Section):
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
    # std_msgs/Float64 with the action's last number, the gripper: -1 open .. 1 closed. Empty: every action number
    # goes to the main command: a robot with no gripper (a TwistStamped's x, y, z: 3-number actions), or a
    # trajectory or array that carries the gripper as one of its own joints or numbers.
    gripper_topic: str = "gripper_command"
    # The largest absolute action allowed in each dimension (empty: the action space's own, 1 each); an action beyond
    # is never published: the node logs it and holds.
    action_limits: list[float] = field(default_factory=list)
    max_speed: float = 0.0  # TwistStamped: the fastest hand speed published, m/s (0: velocity_scale's own limit)
    # std_msgs/Header marking each episode's start in a simulator (the bridge's `episode` with bridge.interface
    # standard): each one drops the rest of the current action chunk, planned for the scene before it (empty: none).
    episode_topic: str = ""


@dataclass
class TeleopConfig(Section):
    """`minivla teleop`, the keyboard teleop node (minivla_ros/teleop.py)."""

    rate: float = 20.0  # commands per second
    speed: float = 0.1  # hand speed in m/s when a direction key is pressed (+ and - change it)
    max_speed: float = 0.2  # + never goes beyond this (the simulated arm's limit at 20 steps/s)


@dataclass
class ExpertNodeConfig(Section):
    """The expert node (minivla_ros/expert_node.py); it follows the task in episode_status."""

    task: str = "push-v3"  # task of the expert until episode_status names one


@dataclass
class RecorderConfig(Section):
    """The recorder node (minivla_ros/recorder.py)."""

    out: str = "bags/demos"  # rosbag2 folder to create (must not exist yet)
    storage: str = "mcap"  # "mcap" or "sqlite3"
    instruction: str = ""  # published with the demonstrations (empty: the task's own, e.g. 'push the puck to the goal')
    # The topics to record, names from docs/topics.md (empty: the demonstration topics of this package's
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
    lerobot: LeRobotConfig = field(default_factory=LeRobotConfig)
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    policy_node: PolicyNodeConfig = field(default_factory=PolicyNodeConfig)
    expert: ExpertNodeConfig = field(default_factory=ExpertNodeConfig)
    recorder: RecorderConfig = field(default_factory=RecorderConfig)
    robot: RobotConfig = field(default_factory=RobotConfig)
    teleop: TeleopConfig = field(default_factory=TeleopConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "Config":
        """Every section validated (Section.validate), then the rules between sections."""
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate(f.name)
        check_policy_node_robot(self.policy_node, self.robot)
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Config":
        """Defaults, overridden by the sections in `data` (a YAML config file's), typed and validated."""
        return _build(cls, data or {}, "").validate()


def check_policy_node_robot(policy_node: PolicyNodeConfig, robot: RobotConfig) -> None:
    """ConfigError unless the policy node's two sections work together: timed mode publishes minivla_ros/ActionChunk
    and takes its episodes from episode_status, so its robot interface is this package's messages."""
    if policy_node.timing == "timed" and (robot.action_type != "ActionCommand" or robot.episode_topic):
        raise ConfigError("policy_node.timing timed publishes minivla_ros/ActionChunk and reads episode_status: use "
                          "robot.action_type ActionCommand and no robot.episode_topic")


def _build(cls, data: Any, where: str):
    """Dataclass `cls` from a mapping, recursing into nested dataclasses, rejecting unknown keys, each value typed as
    its field is declared (_typed; not yet validated). `where` names it in messages ("" for a whole Config)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; known keys are {sorted(fields)}")
    values = {}
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            values[name] = _build(type(default), value, path)
        else:
            values[name] = _typed(fields[name].type, value, path)
    return cls(**values)


# Scientific notation without a decimal point (1e9, 2E-3) is a number to Python and to YAML 1.2, but text to the
# YAML 1.1 that PyYAML reads: a float field takes it as the number it is.
SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
LIST_ITEMS = {"float": "numbers", "str": "strings"}


def _typed(kind: str, value: Any, where: str) -> Any:
    """`value` as a field declared `kind` ("int", "float", "bool", "str", "list[float]" or "list[str]") holds it:
    an integer or scientific notation becomes a float for a float field, a path its text for a text field, and a
    value of another type is a ConfigError naming `where`. Types only: choices and ranges are check_value's."""
    if kind.startswith("list["):
        item = kind[len("list["):-1]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list of {LIST_ITEMS[item]}, got {value!r}")
        return [_typed(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind == "float" and isinstance(value, str) and SCIENTIFIC.fullmatch(value.strip()):
        return float(value)
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "str" and isinstance(value, os.PathLike):
        return os.fspath(value)
    expected = {"int": int, "float": float, "bool": bool, "str": str}[kind]
    if not isinstance(value, expected) or (kind == "int" and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {kind}, got {value!r}")
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
           "eval.instructions": ("plain", "held_out", "other_task", "lerobot"),
           "eval.image_ablation": ("none", "black", "frozen", "shuffled"), "recorder.storage": ("mcap", "sqlite3"),
           "bridge.interface": ("minivla", "standard"), "bridge.timing": TIMINGS, "policy_node.timing": TIMINGS,
           "policy_node.seam": SEAMS, "eval.seam": SEAMS, "run.timing": TIMINGS,
           "eval.engine": ENGINES, "policy_node.engine": ENGINES,
           "robot.camera_type": ("Image", "CompressedImage"), "robot.state_type": ("RobotState", "PoseAndJoints"),
           "robot.action_type": ("ActionCommand", "TwistStamped", "JointTrajectory", "Float64MultiArray")}


@dataclass(frozen=True)
class Bounds:
    """The values a number may take: from `low` to `high`, both included unless excluded."""

    low: float
    high: float = math.inf
    low_excluded: bool = False
    high_excluded: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_excluded else value >= self.low
        below = value < self.high if self.high_excluded else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_excluded else '>='} {self.low}"
        if not (self.low_excluded or self.high_excluded):
            return f"in {self.low}..{self.high}"
        return f"in {'(' if self.low_excluded else '['}{self.low}, {self.high}{')' if self.high_excluded else ']'}"


POSITIVE = Bounds(0, low_excluded=True)  # rates, periods, speeds, scales: "> 0"
NOT_NEGATIVE = Bounds(0)  # counts where 0 means none, no limit or "the checkpoint's"; seconds where 0 turns it off
AT_LEAST_ONE = Bounds(1)
SHARE = Bounds(0, 1, high_excluded=True)  # a share of training samples
SEED = Bounds(0, 2**32 - 1)  # what numpy takes as a seed

# The range of every number field (of each number of a list[float] field), read from the field's comment and the
# code that uses it; every float must also be finite. test/test_config.py checks that each number field has one,
# except env.camera_position (a position: any finite numbers).
RANGES = {
    "env.image_size": Bounds(8, 1024), "env.max_episode_steps": AT_LEAST_ONE, "env.seed": SEED,
    **{f"model.{name}": Bounds(1, limit) for name, limit in MODEL_LIMITS.items()},
    "train.epochs": AT_LEAST_ONE, "train.batch_size": AT_LEAST_ONE, "train.noise_samples_per_obs": AT_LEAST_ONE,
    "train.lr": POSITIVE, "train.weight_decay": NOT_NEGATIVE, "train.warmup_steps": NOT_NEGATIVE,
    "train.ema_decay": Bounds(0, 1), "train.val_fraction": SHARE, "train.image_shift": NOT_NEGATIVE,
    "train.word_dropout": SHARE, "train.foreign_instructions": SHARE, "train.threads": NOT_NEGATIVE,
    "train.seed": SEED,
    "collect.episodes": AT_LEAST_ONE, "collect.max_attempts_factor": Bounds(1),
    "collect.steps_after_success": NOT_NEGATIVE, "collect.workers": Bounds(1, 64),
    "eval.episodes": AT_LEAST_ONE, "eval.seed": SEED, "eval.noise_seed": SEED, "eval.inference_steps": NOT_NEGATIVE,
    "eval.n_action_steps": NOT_NEGATIVE, "eval.threads": NOT_NEGATIVE, "eval.workers": Bounds(1, 64),
    "eval.latency": NOT_NEGATIVE, "eval.view_port": Bounds(1, 65534), "run.view_port": Bounds(1, 65534),
    "eval.step_rate": POSITIVE,
    "run.episodes": NOT_NEGATIVE,
    "bag2data.rate": NOT_NEGATIVE, "bag2data.episode_gap": NOT_NEGATIVE, "bag2data.stale_after": POSITIVE,
    "lerobot.fps": NOT_NEGATIVE,
    "bridge.step_rate": POSITIVE, "bridge.command_timeout": POSITIVE, "bridge.episodes": NOT_NEGATIVE,
    "bridge.min_subscribers": NOT_NEGATIVE, "bridge.motion_noise": NOT_NEGATIVE,
    "policy_node.control_rate": POSITIVE, "policy_node.inference_steps": NOT_NEGATIVE,
    "policy_node.n_action_steps": NOT_NEGATIVE, "policy_node.stale_after": POSITIVE,
    "policy_node.threads": NOT_NEGATIVE, "policy_node.seed": SEED,
    "robot.velocity_scale": POSITIVE, "robot.action_limits": POSITIVE, "robot.max_speed": NOT_NEGATIVE,
    "teleop.rate": POSITIVE, "teleop.speed": POSITIVE, "teleop.max_speed": POSITIVE,
}


def check_value(path: str, value: Any, where: str | None = None) -> Any:
    """`value` if field `path` ("section.field") may hold it: one of its CHOICES, finite, within its RANGES (each
    number of a list); else a ConfigError naming `where` (default: `path`). The one check of a single value: for
    validate(), value_from_text, and functions that take a bare value (an engine's name, an ablation)."""
    where = where or path
    if path in CHOICES and value not in CHOICES[path]:
        raise ConfigError(f"{where} must be one of {', '.join(CHOICES[path])}, got {value!r}")
    for number in value if isinstance(value, list) else [value]:
        if isinstance(number, float) and not math.isfinite(number):
            raise ConfigError(f"{where} must be a finite number, got {number}")
        if path in RANGES and number not in RANGES[path]:
            raise ConfigError(f"{where} must be {RANGES[path]}, got {number}")
    return value


def _read_text(kind: str, text: str, where: str) -> Any:
    """Text read as YAML, as a config file holds it; a text field takes text that YAML reads as something else
    (yes, 123, ~, an empty text, a: b) as it is."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        if kind == "str":
            return text
        raise ConfigError(f"{where}: {text!r} is not valid YAML") from None
    return text if kind == "str" and not isinstance(value, str) else value


def value_from_text(path: str, text: str, where: str | None = None) -> Any:
    """Text from a command line (`--set path=TEXT`) or a launch argument -> the value of field `path`, typed and
    checked as a config file's would be: read as YAML, with scientific notation (1e9) a number for a float field,
    an integer a float there, true/false only for a bool, lists typed by their items, choices and ranges checked.
    A ConfigError names `where` (default: `path`)."""
    field, _ = field_of(path)
    where = where or path
    return check_value(path, _typed(field.type, _read_text(field.type, text, where), where), where)


def text_from_value(path: str, value: Any) -> str:
    """The reverse of value_from_text: text that reads back as `value`, here and in ROS's `-p path:=TEXT` (also
    YAML): YAML (JSON for all but floats) of the field's type, so that 20 for a float field goes as 20.0 (a double
    parameter refuses an integer) and any text survives quoting. Text given for a field of another type
    ("[gripperPOV]", "1e3") is read first. Types only: a value out of range still goes, for the node to refuse."""
    field, _ = field_of(path)
    if isinstance(value, str) and field.type != "str":
        value = _read_text(field.type, value, path)
    value = _typed(field.type, value, path)
    if field.type == "float":
        return _float_text(value)
    if field.type == "list[float]":
        return "[" + ", ".join(_float_text(number) for number in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _float_text(number: float) -> str:
    """A float as text that YAML 1.1 reads back as that float: 1e-06 (which it reads as text) as 1.0e-06."""
    text = repr(number)
    return text.replace("e", ".0e") if "e" in text and "." not in text else text


def validated_replace(section: Section, where: str | None = None, **changes) -> Section:
    """A copy of config section `section` with `changes` (field name -> value, e.g. what `ros2 param set` asks of a
    node), typed and validated as a whole section: the copy, or a ConfigError naming the field (`section` itself
    is left as it was). For the nodes' parameter callbacks."""
    where = where or section_name(type(section))
    fields = {f.name: f for f in dataclasses.fields(section)}
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise ConfigError(f"{where} has no field(s) {', '.join(unknown)}; its fields are {sorted(fields)}")
    typed = {name: _typed(fields[name].type, value, f"{where}.{name}") for name, value in changes.items()}
    return dataclasses.replace(section, **typed).validate(where)


def section_name(cls: type) -> str:
    """The name of the Config field that holds a section of class `cls`: "policy_node" for PolicyNodeConfig."""
    return {f.type: f.name for f in dataclasses.fields(Config)}[cls.__name__]


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
    section_of = {f.type: f.name for f in dataclasses.fields(Config)}
    docs, section, above = {}, None, []
    for line in Path(__file__).read_text().splitlines():
        declared = re.match(r"    (\w+): [\w\[\]|. ]+ = ", line)  # a field, not a method's line
        if line.startswith("class "):
            section, above = section_of.get(line[6:].split("(")[0].split(":")[0]), []
        elif section and line.startswith("    # "):
            above.append(line.strip()[2:])
        elif section and declared:
            name = declared.group(1)
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


# --- config/default.yaml: every field with its default, written from this file ------------------------------

def defaults_yaml() -> str:
    """The text of config/default.yaml: each section of Config with every field at its default, under the field's
    comment in this file (field_docs); test/test_config.py checks that the file is this text."""
    docs = field_docs()
    lines = ["# Every setting of minivla with its default, each under its comment in minivla_core/config.py, where it",
             "# is declared. Written by `python -m minivla_core.config --write-defaults config/default.yaml`; a test",
             "# keeps the two equal. Pass any subset of it with --config; `minivla COMMAND --help` shows the same."]
    for section, values in Config().to_dict().items():
        lines.append(f"{section}:")
        for name, value in values.items():
            lines += [f"  # {text}" for text in textwrap.wrap(docs[f"{section}.{name}"], 114)]
            flow = None if isinstance(value, list) else False  # lists on one line: [0.75, 0.075, 0.7]
            lines.append("  " + yaml.safe_dump({name: value}, default_flow_style=flow, width=1000).rstrip("\n"))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minivla_core.config", description="The config schema's files.")
    parser.add_argument("--write-defaults", metavar="FILE", required=True,
                        help="write every field with its default and comment (config/default.yaml)")
    args = parser.parse_args(argv)
    Path(args.write_defaults).write_text(defaults_yaml())
    print(f"wrote {args.write_defaults}")


if __name__ == "__main__":
    main()
