"""The launch file and the ROS parameter file against the one config schema.

`ros2 launch` itself is not installable here; these checks make sure that every parameter the
launch file and config/sim_policy.yaml set is a field a node declares (a typo would otherwise
only show on a machine with ROS 2), and that the two executables exist.
"""

import dataclasses
from pathlib import Path

import yaml

from minivla_core.config import BridgeConfig, EnvConfig, PolicyNodeConfig, RobotConfig

ROOT = Path(__file__).resolve().parents[2]
NODE_SECTIONS = {"sim_bridge": {"env": EnvConfig, "bridge": BridgeConfig},
                 "policy_node": {"policy_node": PolicyNodeConfig, "robot": RobotConfig}}


def declared(node: str) -> set[str]:
    return {f"{section}.{f.name}" for section, cls in NODE_SECTIONS[node].items() for f in dataclasses.fields(cls)}


def test_parameter_file_sets_only_declared_parameters_with_the_right_types():
    params = yaml.safe_load((ROOT / "config" / "sim_policy.yaml").read_text())
    assert set(params) == set(NODE_SECTIONS)
    for node, content in params.items():
        for section, values in content["ros__parameters"].items():
            cls = NODE_SECTIONS[node][section]
            defaults = cls()
            for name, value in values.items():
                assert f"{section}.{name}" in declared(node), f"{node} does not declare {section}.{name}"
                assert type(value) is type(getattr(defaults, name)), f"{section}.{name}: {value!r}"


def test_launch_arguments_set_declared_parameters_typed_from_the_schema():
    """launch/sim_policy.launch.py hands its arguments to graph.sim_policy_overrides (ros2 launch cannot run here)."""
    import pytest

    from minivla_core.errors import ConfigError
    from minivla_ros import graph

    source = (ROOT / "launch" / "sim_policy.launch.py").read_text()
    assert "graph.sim_policy_overrides(texts, config_file)" in source and "graph.SIM_POLICY_ARGUMENTS" in source
    assert {"task", "checkpoint", "control_rate", "inference_steps", "extra_cameras"} <= set(graph.SIM_POLICY_ARGUMENTS)
    for argument, parameter in graph.SIM_POLICY_ARGUMENTS.items():
        if parameter == "run.timing":  # timing:= sets both nodes' timing, as `minivla run` does
            assert {"bridge.timing"} <= declared("sim_bridge") and {"policy_node.timing"} <= declared("policy_node")
            continue
        assert parameter in declared(graph.SECTION_NODES[parameter.split(".")[0]][0]), (argument, parameter)
    given = {argument: "" for argument in graph.SIM_POLICY_ARGUMENTS}
    given.update(task="reach-v3", control_rate="10", extra_cameras="[gripperPOV]", seed="7", timing="lockstep")
    overrides = graph.sim_policy_overrides(given)
    assert overrides == {"sim_bridge": {"env.task": "reach-v3", "env.extra_cameras": ["gripperPOV"], "env.seed": 7,
                                        "bridge.timing": "lockstep"},
                         "policy_node": {"policy_node.control_rate": 10.0, "policy_node.timing": "lockstep"}}
    assert type(overrides["policy_node"]["policy_node.control_rate"]) is float  # a double parameter refuses an int
    assert graph.sim_policy_overrides({"extra_cameras": "[]"}) == {"sim_bridge": {}, "policy_node": {}}
    assert graph.sim_policy_overrides({"control_rate": "1e9"})["policy_node"] == {"policy_node.control_rate": 1e9}
    for argument, text in (("control_rate", "fast"), ("seed", "1.5"), ("extra_cameras", "gripperPOV: 1"),
                           ("timing", "sometimes"), ("control_rate", "0"), ("image_size", "4")):
        with pytest.raises(ConfigError, match=f"launch argument {argument}:="):
            graph.sim_policy_overrides({argument: text})


def test_a_config_file_sets_the_launch_parameters_of_its_sections(tmp_path):
    """`ros2 launch minivla_ros sim_policy.launch.py config:=config/fetch.yaml`: each section goes to the node that
    declares it, launch arguments win over the file, and a file that is not of the schema stops the launch."""
    import pytest

    from minivla_core.errors import ConfigError
    from minivla_ros import graph

    overrides = graph.sim_policy_overrides({"checkpoint": "mine.pt", "task": ""}, str(ROOT / "config" / "fetch.yaml"))
    bridge, policy = overrides["sim_bridge"], overrides["policy_node"]
    assert bridge["env.task"] == "fetch-push" and bridge["bridge.interface"] == "standard"
    assert policy["robot.action_type"] == "TwistStamped" and policy["robot.velocity_scale"] == 0.25
    assert policy["policy_node.checkpoint"] == "mine.pt"
    assert set(bridge) <= declared("sim_bridge") and set(policy) <= declared("policy_node")
    bad = tmp_path / "bad.yaml"
    bad.write_text("robot:\n  action_typ: TwistStamped\n")
    with pytest.raises(ConfigError, match="action_typ"):
        graph.sim_policy_overrides({}, str(bad))


def test_minivla_run_sets_the_simulator_up_as_the_checkpoint_was_trained():
    from minivla_core.checkpoint import read_checkpoint
    from minivla_core.config import text_from_value
    from minivla_ros.bringup import DEFAULT_PARAMS, camera_for_checkpoint

    for checkpoint in ("checkpoints/push_v3.pt", "checkpoints/multitask.pt"):
        env = read_checkpoint(ROOT / checkpoint)["env"]
        settings = camera_for_checkpoint(DEFAULT_PARAMS, {"policy_node.checkpoint": checkpoint})
        assert settings["env.image_size"] == env["image_size"] and settings["env.observation"] == env["observation"]
        assert settings["env.camera_position"] == env["camera_position"]
        assert settings.get("env.extra_cameras", []) == env["extra_cameras"]
        for name, value in settings.items():  # as the node reads `-p name:=TEXT`
            assert yaml.safe_load(text_from_value(name, value)) == value
    # the parameter file's checkpoint
    assert camera_for_checkpoint(DEFAULT_PARAMS, {})["env.image_size"] == EnvConfig().image_size
    # a checkpoint that cannot be read: the policy node will say why
    assert camera_for_checkpoint(DEFAULT_PARAMS, {"policy_node.checkpoint": "nowhere.pt"}) == {}


def test_launch_files_keep_dds_on_loopback_and_the_recording_ends_with_its_recorder():
    """Issue 10 [1], [10], checked in the source since `ros2 launch` cannot run here: both launch files
    default the Fast DDS profile to config/fastdds_loopback.xml; the recording launch shuts down when
    `ros2 bag record` exits and takes its instruction from `task` (no push sentence built in)."""
    for name in ("sim_policy.launch.py", "record_demos.launch.py"):
        source = (ROOT / "launch" / name).read_text()
        assert "fastdds_loopback.xml" in source and "FASTRTPS_DEFAULT_PROFILES_FILE" in source, name
    record = (ROOT / "launch" / "record_demos.launch.py").read_text()
    assert "OnProcessExit(target_action=recorder" in record and "Shutdown(" in record
    assert "shutil.which(\"ros2\") is None" in record  # a recorder that cannot start shuts the launch down too
    assert "push the puck to the goal" not in record and "sim_instruction(task)" in record
    assert (ROOT / "config" / "fastdds_loopback.xml").is_file()


def test_a_node_checks_its_parameters_against_the_schema_before_it_starts():
    """declare_section validates each section: a value the schema refuses stops the node with one line naming it,
    before any simulator or checkpoint is loaded; the same check as a config file's (test/test_config.py)."""
    import subprocess

    from minivla_ros import bringup

    for node, overrides, message in (
            ("sim_bridge", {"bridge.step_rate": -20.0}, "bridge.step_rate must be > 0, got -20.0"),
            ("sim_bridge", {"bridge.timing": "timed", "bridge.interface": "standard"},
             "bridge.timing timed takes chunks on action_chunk"),
            ("expert_node", {"robot.action_type": "Pose"}, "robot.action_type must be one of ActionCommand")):
        result = subprocess.run(bringup.node_command(node, bringup.DEFAULT_PARAMS, overrides), capture_output=True,
                                text=True, timeout=120, env=bringup.ros_environment(), cwd=ROOT)
        assert result.returncode == 2, result.stdout + result.stderr
        last = result.stdout.strip().splitlines()[-1]
        assert last.startswith("error: ") and message in last, result.stdout + result.stderr
