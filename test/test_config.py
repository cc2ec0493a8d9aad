"""The one config schema: YAML in and out, typos refused, every field checked by the schema itself (choices, ranges,
the rules between fields), one converter from text to a value and back, and config/default.yaml equal to it."""

import dataclasses
import math
import re
import subprocess
import sys

import pytest
import yaml

from minivla_test_utils import ROOT
from minivla_core.config import (
    CHOICES, RANGES, BridgeConfig, Config, EnvConfig, ModelConfig, PolicyNodeConfig, defaults_yaml, field_of,
    load_config, save_config, text_from_value, validated_replace, value_from_text)
from minivla_core.errors import ConfigError

SECTIONS = [f.name for f in dataclasses.fields(Config)]
FIELDS = [f"{section}.{f.name}" for section in SECTIONS for f in dataclasses.fields(getattr(Config(), section))]


def test_shipped_default_yaml_holds_every_field_at_its_default():
    """Every field present, every value the schema's default, nothing else: what `--config` users copy from."""
    written = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
    defaults = Config().to_dict()
    assert list(written) == list(defaults)
    for section, values in defaults.items():
        missing = sorted(set(values) - set(written[section]))
        extra = sorted(set(written[section]) - set(values))
        assert not missing and not extra, f"config/default.yaml {section}: missing {missing}, unknown {extra}"
        for name, value in values.items():
            assert written[section][name] == value and type(written[section][name]) is type(value), (section, name)
    assert load_config(ROOT / "config" / "default.yaml") == Config()


def test_shipped_default_yaml_is_written_from_the_schema_with_its_comments():
    assert (ROOT / "config" / "default.yaml").read_text() == defaults_yaml(), (
        "config/default.yaml differs from the schema: python -m minivla_core.config --write-defaults "
        "config/default.yaml")


def test_yaml_round_trip_and_partial_files(tmp_path):
    config = Config()
    config.model.inference_steps = 3
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config
    (tmp_path / "p.yaml").write_text("eval:\n  episodes: 7\n")
    loaded = load_config(tmp_path / "p.yaml")
    assert loaded.eval.episodes == 7 and loaded.model == Config().model


@pytest.mark.parametrize("text, message", [
    ("model:\n  inference_stpes: 3\n", "unknown key"),
    ("model:\n  inference_steps: three\n", "model.inference_steps: expected int"),
    ("model: [1, 2]\n", "expected a mapping"),
    ("model: {\n", "not valid YAML"),
    ("policy_node:\n  control_rate: -1\n", "policy_node.control_rate must be > 0, got -1"),
    ("bridge:\n  timing: sometimes\n", "bridge.timing must be one of free, lockstep, timed, got 'sometimes'"),
    ("env:\n  camera_position: [1, .nan, 2]\n", "env.camera_position must be a finite number"),
])
def test_bad_config_files_are_named(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(tmp_path / "bad.yaml")


def test_a_yaml_file_may_write_floats_in_scientific_notation(tmp_path):
    """PyYAML (YAML 1.1) reads 1e3 as text; a float field takes it as the number it is, an int field does not."""
    (tmp_path / "c.yaml").write_text("policy_node:\n  control_rate: 1e3\n  stale_after: 2.5E-1\n"
                                     "env:\n  camera_position: [7.5e-1, 0, 1]\n")
    config = load_config(tmp_path / "c.yaml")
    assert config.policy_node.control_rate == 1000.0 and config.policy_node.stale_after == 0.25
    assert config.env.camera_position == [0.75, 0.0, 1.0]
    (tmp_path / "c.yaml").write_text("policy_node:\n  threads: 1e3\n")
    with pytest.raises(ConfigError, match="policy_node.threads: expected int, got '1e3'"):
        load_config(tmp_path / "c.yaml")


def outside(path: str):
    """A value of field `path`'s type just outside its range."""
    bounds, (declared, _) = RANGES[path], field_of(path)
    if bounds.high != math.inf:
        value = bounds.high if bounds.high_excluded else bounds.high + 1
    else:
        value = bounds.low if bounds.low_excluded else bounds.low - 1
    value = float(value) if "float" in declared.type else value
    return [value] if declared.type.startswith("list") else value


@pytest.mark.parametrize("path", sorted(RANGES))
def test_every_range_is_checked_by_the_schema_naming_the_field(path):
    section, name = path.split(".")
    message = f"{path} must be "
    with pytest.raises(ConfigError, match=re.escape(message)):  # a config file, the CLI
        Config.from_dict({section: {name: outside(path)}})
    with pytest.raises(ConfigError, match=re.escape(message)):  # a section built in Python
        dataclasses.replace(getattr(Config(), section), **{name: outside(path)}).validate()
    with pytest.raises(ConfigError, match=re.escape(message)):  # `ros2 param set`
        validated_replace(getattr(Config(), section), **{name: outside(path)})


@pytest.mark.parametrize("path", sorted(CHOICES))
def test_every_choice_is_checked_by_the_schema_naming_the_field(path):
    section, name = path.split(".")
    message = f"{path} must be one of {', '.join(CHOICES[path])}, got 'bogus'"
    with pytest.raises(ConfigError, match=re.escape(message)):
        Config.from_dict({section: {name: "bogus"}})
    with pytest.raises(ConfigError, match=re.escape(message)):
        dataclasses.replace(getattr(Config(), section), **{name: "bogus"}).validate()
    with pytest.raises(ConfigError, match=re.escape(message)):
        value_from_text(path, "bogus")


def test_every_number_field_has_a_range_and_every_section_validates_its_defaults():
    numbers = {path for path in FIELDS if field_of(path)[0].type in ("int", "float", "list[float]")}
    assert numbers - set(RANGES) == {"env.camera_position"}  # a position: any finite numbers
    assert set(RANGES) <= set(FIELDS) and set(CHOICES) <= set(FIELDS)
    assert Config().validate() == Config()
    with pytest.raises(ConfigError, match=re.escape("policy_node.control_rate must be > 0, got -1")):
        PolicyNodeConfig(control_rate=-1).validate()
    with pytest.raises(ConfigError, match=re.escape("model_config.d_model must be in 1..4096, got 0")):
        ModelConfig(d_model=0).validate("model_config")  # a checkpoint's model section
    with pytest.raises(ConfigError, match=re.escape("eval.latency: expected float, got 'soon'")):
        Config.from_dict({"eval": {"latency": "soon"}})


@pytest.mark.parametrize("section, change, message", [
    ("model", dict(horizon=4, n_action_steps=5), "model.n_action_steps (5) must not exceed horizon (4)"),
    ("model", dict(diffusion_steps=5, inference_steps=6), "model.inference_steps (6) must not exceed diffusion_steps"),
    ("bridge", dict(timing="timed", interface="standard"), "bridge.timing timed takes chunks on action_chunk"),
    ("env", dict(camera_position=[1.0, 2.0]), "env.camera_position must be 3 numbers (x, y, z) or empty"),
    ("env", dict(extra_cameras=["gripperPOV", "gripperPOV"]), "env.extra_cameras must be at most 7 distinct"),
    ("env", dict(extra_cameras=["corner2"]), "without env.camera ('corner2')"),
])
def test_fields_that_contradict_each_other_are_refused(section, change, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Config.from_dict({section: change})


def test_the_policy_nodes_timed_mode_needs_this_packages_robot_messages():
    timed = {"policy_node": {"timing": "timed"}}
    assert Config.from_dict(timed).policy_node.timing == "timed"
    for robot in ({"action_type": "TwistStamped"}, {"episode_topic": "episode"}):
        with pytest.raises(ConfigError, match="policy_node.timing timed publishes minivla_ros/ActionChunk"):
            Config.from_dict({**timed, "robot": robot})


def test_validated_replace_returns_a_checked_copy_and_leaves_the_section_alone():
    bridge = BridgeConfig()
    changed = validated_replace(bridge, command_timeout=2, episodes=3)
    assert (changed.command_timeout, changed.episodes) == (2.0, 3) and type(changed.command_timeout) is float
    assert bridge == BridgeConfig()
    for changes, message in ((dict(command_timeout=0.0), "bridge.command_timeout must be > 0"),
                             (dict(episodes=-1), "bridge.episodes must be >= 0"),
                             (dict(episodes="3"), "bridge.episodes: expected int"),
                             (dict(step_ratee=3.0), "bridge has no field(s) step_ratee")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            validated_replace(bridge, **changes)


# --- one converter: text -> value (--set, launch arguments) and its reverse (-p name:=TEXT) ---------------------

@pytest.mark.parametrize("path, text, value", [
    ("teleop.speed", "1e9", 1e9), ("teleop.speed", "1e-4", 1e-4), ("teleop.speed", "2.5E+1", 25.0),
    ("teleop.speed", "3", 3.0), ("policy_node.control_rate", "1e3", 1000.0), ("env.seed", "7", 7),
    ("policy_node.dry_run", "true", True), ("env.camera_position", "[1e-1, 0, 1]", [0.1, 0.0, 1.0]),
    ("env.extra_cameras", "[gripperPOV]", ["gripperPOV"]), ("policy_node.timing", "timed", "timed"),
    ("policy_node.instruction", "yes", "yes"), ("policy_node.instruction", "'quoted: text'", "quoted: text"),
    ("train.resume", "", ""), ("env.task", "123", "123"),
])
def test_text_becomes_the_value_its_field_declares(path, text, value):
    converted = value_from_text(path, text)
    assert converted == value and type(converted) is type(value)


@pytest.mark.parametrize("path, text, message", [
    ("teleop.speed", "fast", "teleop.speed: expected float, got 'fast'"),
    ("teleop.speed", "-1e9", "teleop.speed must be > 0, got -1000000000.0"),
    ("teleop.speed", ".inf", "teleop.speed must be a finite number"),
    ("env.seed", "1.5", "env.seed: expected int, got 1.5"),
    ("policy_node.dry_run", "1", "policy_node.dry_run: expected bool, got 1"),
    ("env.extra_cameras", "gripperPOV", "env.extra_cameras: expected a list of strings"),
    ("env.camera_position", "[1, x, 2]", "env.camera_position[1]: expected float, got 'x'"),
    ("policy_node.timing", "sometimes", "policy_node.timing must be one of free, lockstep, timed"),
    ("policy_node.control_rat", "10", "unknown config field 'policy_node.control_rat'"),
])
def test_text_that_is_not_a_value_of_its_field_is_named(path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        value_from_text(path, text)


def test_values_go_to_text_and_back_unchanged_for_every_field():
    """text_from_value writes what value_from_text (and ROS's -p name:=TEXT, which reads YAML) reads back."""
    examples = {"policy_node.control_rate": 20, "policy_node.instruction": "push: the 'puck' # now",
                "env.extra_cameras": "[gripperPOV]", "env.camera_position": [1, 2, 3], "recorder.out": ROOT / "bags"}
    assert text_from_value("policy_node.control_rate", 20) == "20.0"  # a double parameter refuses an integer
    for path in FIELDS:
        value = examples.get(path, field_of(path)[1])
        text = text_from_value(path, value)
        assert value_from_text(path, text) == yaml.safe_load(text), (path, text)
    assert value_from_text("env.extra_cameras", text_from_value("env.extra_cameras", "[gripperPOV]")) == ["gripperPOV"]
    assert value_from_text("recorder.out", text_from_value("recorder.out", ROOT / "bags")) == str(ROOT / "bags")
    assert value_from_text("policy_node.instruction", text_from_value("policy_node.instruction", examples[
        "policy_node.instruction"])) == examples["policy_node.instruction"]
    assert text_from_value("bridge.step_rate", "1e3") == "1000.0"  # a config file's text, as a node declares it
    assert text_from_value("bridge.step_rate", -5.0) == "-5.0"  # types only: the node refuses the value itself


def test_set_reads_scientific_notation_and_is_checked_by_the_schema():
    """`--set teleop.speed=1e9` was refused ("expected float") while the flag took 1e-4: both are floats now."""
    from minivla_core.cli import build_parser, read_settings

    def settings(*sets):
        args = build_parser().parse_args(["info", *(f"--set={s}" for s in sets)])
        return Config.from_dict(read_settings(args))

    assert settings("teleop.speed=1e9").teleop.speed == 1e9
    assert settings("teleop.speed=1e-4", "policy_node.control_rate=30").teleop.speed == 1e-4
    for setting, message in (("teleop.speed=-1", "--set 'teleop.speed=-1': teleop.speed must be > 0"),
                             ("bridge.timing=sometimes", "bridge.timing must be one of free, lockstep, timed"),
                             ("eval.episodes=0", "eval.episodes must be >= 1, got 0")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            settings(setting)
    result = subprocess.run([sys.executable, "-m", "minivla_core.cli", "info", "--set", "teleop.speed=1e9", "--set",
                             "eval.checkpoint=checkpoints/push_v3.pt"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "observation: proprio" in result.stdout, result.stderr
    result = subprocess.run([sys.executable, "-m", "minivla_core.cli", "info", "--set", "teleop.rate=0"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
        "error: --set 'teleop.rate=0': teleop.rate must be > 0, got 0.0"), result.stderr


def test_a_launch_argument_in_scientific_notation_reaches_the_node_as_a_float():
    from minivla_ros import graph  # the launch file's converter: no rclpy needed

    overrides = graph.sim_policy_overrides({"control_rate": "1e3", "step_rate": "1e3", "seed": "7"})
    assert overrides == {"sim_bridge": {"bridge.step_rate": 1000.0, "env.seed": 7},
                         "policy_node": {"policy_node.control_rate": 1000.0}}
    with pytest.raises(ConfigError, match=re.escape("launch argument control_rate:='-1e3': policy_node.control_rate "
                                                    "must be > 0")):
        graph.sim_policy_overrides({"control_rate": "-1e3"})


def test_env_config_names_the_first_field_of_a_section_built_in_python():
    with pytest.raises(ConfigError, match=re.escape("env.image_size must be in 8..1024, got 4")):
        EnvConfig(image_size=4).validate()
