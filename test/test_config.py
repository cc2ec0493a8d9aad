"""The one config schema: YAML in and out, typos refused."""

import pytest

from minivla_test_utils import ROOT
from minivla_core.config import Config, load_config, save_config
from minivla_core.errors import ConfigError


def test_shipped_default_yaml_matches_the_dataclass_defaults():
    assert load_config(ROOT / "config" / "default.yaml") == Config()


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
    ("model:\n  inference_steps: three\n", "expected int"),
    ("model: [1, 2]\n", "expected a mapping"),
    ("model: {\n", "not valid YAML"),
])
def test_bad_config_files_are_named(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "bad.yaml")
