"""The graph's contract (minivla_ros/graph.py) is the one every other place reads: executables, bags (and the docs:
test/test_docs.py keeps docs/topics.md and docs/parameters.md equal to it).

These tests need no DDS; test/ros/test_graph.py checks that running nodes publish what it says.
"""

from pathlib import Path

from minivla_ros import graph

ROOT = Path(__file__).resolve().parents[1]


def test_every_node_has_one_executable_running_its_module():
    executables = {path.name: path.read_text() for path in (ROOT / "scripts" / "ros").iterdir()}
    assert set(executables) == set(graph.NODES)
    for name, module in graph.NODES.items():
        assert f"from {module} import main" in executables[name]


def test_bag_topics_cover_what_conversion_needs():
    required = {topic for topic in graph.RECORDED if topic.required}
    assert required == {graph.IMAGE, graph.STATE, graph.ACTION, graph.EPISODE_STATUS}
    assert graph.PRIVILEGED_STATE not in graph.RECORDED  # the expert's view never becomes a policy's input
