"""The graph's contract (minivla_ros/graph.py) is the one every other place reads: README, executables, bags.

These tests need no DDS; test/ros/test_graph.py checks that running nodes publish what it says.
"""

import re
from pathlib import Path

from minivla_ros import graph

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_topic_table_is_the_graph_contract():
    assert graph.markdown_table() in README, ("README.md's topic table differs from minivla_ros/graph.py; paste "
                                              "graph.markdown_table() into it")


def test_readme_parameter_table_is_the_config_schema():
    assert graph.parameter_table() in README, ("README.md's parameter table differs from the config schema; paste "
                                               "graph.parameter_table() into it")


def test_readme_bag_record_command_names_exactly_the_recorded_topics():
    commands = [line for line in README.splitlines() if line.startswith("ros2 bag record")]
    assert commands
    for command in commands:
        assert set(re.findall(r" (/\S+)", command)) == {topic.absolute for topic in graph.RECORDED}


def test_every_node_has_one_executable_running_its_module():
    executables = {path.name: path.read_text() for path in (ROOT / "scripts" / "ros").iterdir()}
    assert set(executables) == set(graph.NODES)
    for name, module in graph.NODES.items():
        assert f"from {module} import main" in executables[name]


def test_bag_topics_cover_what_conversion_needs():
    required = {topic for topic in graph.RECORDED if topic.required}
    assert required == {graph.IMAGE, graph.STATE, graph.ACTION, graph.EPISODE_STATUS}
    assert graph.PRIVILEGED_STATE not in graph.RECORDED  # the expert's view never becomes a policy's input
