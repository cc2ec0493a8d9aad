"""The documentation says what the code says.

- docs/parameters.md and docs/topics.md are exactly what scripts/make_docs.py writes from the config schema and the
  graph's contract now; its --check names a stale page, and writing mends it.
- Every config field, topic and service has its row; the graph's interface and timing names are the schema's.
- Every relative link of README.md, docs/ and bench/results/README.md leads to a file (and heading) that exists.
- The README's map names every module of minivla_core/ and minivla_ros/; bench/results/README.md indexes every
  results file; a documented `ros2 bag record` command records exactly the demonstration topics.
"""

import dataclasses
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minivla_core.config import CHOICES, Config
from minivla_core.errors import ConfigError
from minivla_core.timing import TIMINGS
from minivla_ros import graph

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_docs.py"
PAGES_WITH_LINKS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "results" / "README.md"]


def load_make_docs():
    spec = importlib.util.spec_from_file_location("make_docs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_docs = load_make_docs()


@pytest.mark.parametrize("name", sorted(make_docs.PAGES))
def test_generated_page_is_what_the_code_says_now(name):
    committed = (ROOT / "docs" / name).read_text()
    assert committed == make_docs.PAGES[name](), f"docs/{name} is stale: run .venv/bin/python scripts/make_docs.py"


def test_check_names_the_stale_page_and_writing_mends_it(tmp_path):
    for name in make_docs.PAGES:
        shutil.copy(ROOT / "docs" / name, tmp_path / name)
    stale = tmp_path / "topics.md"
    stale.write_text(stale.read_text().replace("| `/action_chunk` |", "| `/action_chunks` |"))

    def make(*args):
        return subprocess.run([sys.executable, str(SCRIPT), "--docs", str(tmp_path), *args], capture_output=True,
                              text=True)

    checked = make("--check")
    assert checked.returncode == 1
    assert "topics.md is stale" in checked.stderr and "parameters.md" not in checked.stderr
    assert make().returncode == 0
    assert make("--check").returncode == 0
    assert stale.read_text() == (ROOT / "docs" / "topics.md").read_text()


def test_every_config_field_topic_and_service_has_a_row():
    parameters = (ROOT / "docs" / "parameters.md").read_text()
    for section in dataclasses.fields(Config):
        for field in dataclasses.fields(getattr(Config(), section.name)):
            assert f"| `{section.name}.{field.name}` |" in parameters, (section.name, field.name)
    topics = (ROOT / "docs" / "topics.md").read_text()
    for topic in graph.TOPICS:
        assert f"| `{topic.absolute}` |" in topics, topic.name
    for service in graph.SERVICES:
        assert f"| `/{service.name}` |" in topics, service.name


def test_the_graph_says_where_each_topic_is_used_in_the_schemas_names():
    for topic in graph.TOPICS:
        assert topic.interfaces and set(topic.interfaces) <= set(CHOICES["bridge.interface"]), topic.name
        assert topic.timings and set(topic.timings) <= set(TIMINGS), topic.name
    assert graph.ACTION.timings == ("free", "lockstep") and graph.ACTION_CHUNK.timings == ("timed",)
    # Timed mode takes this package's interface only, so a standard-only topic is never used in timed mode:
    with pytest.raises(ConfigError):
        Config.from_dict({"bridge": {"timing": "timed", "interface": "standard"}})
    assert all("timed" not in topic.timings for topic in graph.TOPICS if topic.interfaces == ("standard",))


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings (not of comments in its code blocks): lower case, punctuation dropped,
    spaces as hyphens."""
    anchors, in_code = set(), False
    for line in markdown.splitlines():
        in_code ^= line.startswith("```")
        if line.startswith("#") and not in_code:
            text = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", PAGES_WITH_LINKS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_leads_somewhere(page):
    text = page.read_text()
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", link):  # https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.relative_to(ROOT)}: {link} leads nowhere"
        if anchor:
            assert anchor in heading_anchors(path.read_text()), f"{page.relative_to(ROOT)}: no heading for {link}"


def test_the_readme_map_names_every_module():
    readme = (ROOT / "README.md").read_text()
    for package in ("minivla_core", "minivla_ros"):
        for path in sorted((ROOT / package).iterdir()):
            if path.name.startswith(("_", ".")) or not (path.suffix == ".py" or (path / "__init__.py").exists()):
                continue
            name = path.name if path.suffix == ".py" else path.name + "/"
            named = f"`{package}/{name}" in readme or (path.suffix == ".py" and f"`{path.name}`" in readme)
            assert named, f"README.md's map does not name {package}/{name}"
    assert "`base.py`" in readme  # the env protocol and task registry (minivla_core/envs/base.py)


def test_the_results_index_names_every_results_file():
    index = (ROOT / "bench" / "results" / "README.md").read_text()
    for path in sorted((ROOT / "bench" / "results").glob("*.md")):
        if path.name != "README.md":
            assert f"]({path.name})" in index, f"bench/results/README.md does not index {path.name}"


def test_a_documented_bag_record_command_records_exactly_the_demonstration_topics():
    commands = [line for page in (ROOT / "docs").glob("*.md") for line in page.read_text().splitlines()
                if line.startswith("ros2 bag record")]
    assert commands
    for command in commands:
        assert set(re.findall(r" (/\S+)", command)) == {topic.absolute for topic in graph.RECORDED}
