"""The reference pages written from the code, not by hand: docs/parameters.md (every config field, from
minivla_core/config.py) and docs/topics.md (every topic and service of the ROS graph, from minivla_ros/graph.py).

    .venv/bin/python scripts/make_docs.py           # rewrite both pages
    .venv/bin/python scripts/make_docs.py --check   # exit 1, naming each page that differs from what the code says

A field's text is its comment in config.py (config.field_docs), its choices config.CHOICES, its range config.RANGES;
which node declares a section and which parameters it may change while running come from graph.SECTION_NODES and
graph.CHANGEABLE. test/test_docs.py runs the check: change a field or a topic and the tests fail until the pages
are written again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from any folder: the packages of this checkout

from minivla_core.config import CHOICES, RANGES, Config, field_docs  # noqa: E402
from minivla_core.timing import TIMINGS  # noqa: E402
from minivla_ros import graph  # noqa: E402

GENERATED = ("<!-- Written by scripts/make_docs.py from {source}: do not edit by hand; change the source and run "
             "`.venv/bin/python scripts/make_docs.py` (test/test_docs.py fails while this page differs). -->")


def cell(text: str) -> str:
    """Text that stays inside one cell of a markdown table."""
    return " ".join(str(text).split()).replace("|", "\\|")


def default_text(value) -> str:
    """A default as a YAML config file or `--set` writes it: "push-v3", 20.0, true, [0.75, 0.075, 0.7]."""
    return f"`{json.dumps(value)}`"


def allowed_values(path: str, kind: str) -> str:
    """The field's type and what it may hold: its choices, or its range (each number of a list)."""
    if path in CHOICES:
        return "one of " + ", ".join(f"`{choice}`" for choice in CHOICES[path])
    if path in RANGES:
        return f"{kind}, each {RANGES[path]}" if kind.startswith("list") else f"{kind} {RANGES[path]}"
    return kind


def section_summary(section_class: type) -> str:
    """The section class's docstring; "" when it has none (dataclass then writes its signature there)."""
    doc = section_class.__doc__ or ""
    return "" if doc.startswith(section_class.__name__ + "(") else " ".join(doc.split())


def run_time_change(path: str, nodes: tuple[str, ...]) -> str:
    """Whether `ros2 param set` may change the field on the nodes that declare it (graph.CHANGEABLE)."""
    if not nodes:
        return "-"
    changing = [node for node in nodes if path in graph.CHANGEABLE.get(node, ())]
    if not changing:
        return "no"
    return "yes" if len(changing) == len(nodes) else f"yes on {', '.join(changing)}"


def parameters_page() -> str:
    docs, defaults = field_docs(), Config()
    lines = [GENERATED.format(source="minivla_core/config.py and minivla_ros/graph.py"), "",
             "# Parameters", "",
             "Every setting of minivla, section by section: the same fields in a YAML config file (`--config "
             "FILE.yaml`, any subset of config/default.yaml), on the command line (`--set section.field=value`, or "
             "a command's named flag: `minivla COMMAND --help`) and as ROS parameters of the nodes that declare the "
             "section (a parameter file such as config/sim_policy.yaml, `-p section.field:=value`, a launch "
             "argument). A running node changes only the parameters marked yes under \"at run time\" (`ros2 param "
             "set`); the others are read-only. A value outside its choices or range is refused, naming the field.",
             ""]
    for section_field in dataclasses.fields(Config):
        section = section_field.name
        section_class = type(getattr(defaults, section))
        nodes = graph.SECTION_NODES.get(section, ())
        lines += [f"## `{section}`", ""]
        summary = section_summary(section_class)
        if summary:
            lines += [summary, ""]
        lines += [f"ROS parameters of: {', '.join(nodes)}." if nodes else "Not a ROS node's parameters.", "",
                  "| field | default | values | at run time | what it is |", "| --- | --- | --- | --- | --- |"]
        for field in dataclasses.fields(section_class):
            path = f"{section}.{field.name}"
            default = default_text(getattr(getattr(defaults, section), field.name))
            lines.append(f"| `{path}` | {default} | {cell(allowed_values(path, str(field.type)))} | "
                         f"{run_time_change(path, nodes)} | {cell(docs.get(path, ''))} |")
        lines.append("")
    lines += ["## Launch arguments of sim_policy.launch.py", "",
              "Each sets one parameter (timing: both nodes'); an argument left out keeps the parameter file's value.",
              "", "| argument | sets |", "| --- | --- |"]
    for argument, parameter in graph.SIM_POLICY_ARGUMENTS.items():
        sets = "`bridge.timing` and `policy_node.timing`" if parameter == "run.timing" else f"`{parameter}`"
        lines.append(f"| `{argument}:=` | {sets} |")
    return "\n".join(lines) + "\n"


def where_used(names: tuple[str, ...], every: tuple[str, ...]) -> str:
    return "all" if set(names) == set(every) else ", ".join(names)


def topic_row(name: str, topic: graph.Topic, publishers: str | None = None) -> str:
    bag = ("required" if topic.required else "yes") if topic.recorded else "no"
    interfaces = where_used(topic.interfaces, CHOICES["bridge.interface"])
    return (f"| `{name}` | `{topic.type}` | {graph.QOS_WORDS[topic.qos]} | {cell(publishers or topic.publishers)} | "
            f"{cell(topic.subscribers)} | {interfaces} | {where_used(topic.timings, tuple(TIMINGS))} | {bag} |")


def topics_page() -> str:
    lines = [GENERATED.format(source="minivla_ros/graph.py"), "", "# Topics and services", "",
             "Every topic and service of the graph, as minivla_ros/graph.py writes them once for the nodes, the "
             "launch files, `minivla run` / `record`, the recorder and `minivla bag2data`. Names are relative: a "
             "node resolves them in its namespace (none: `/name`). The `robot` config section renames what the "
             "policy node and the expert read and write for another robot; these are its defaults.", "",
             "- bridge.interface: the simulator bridge's interfaces in which the topic carries anything "
             "(`minivla`: this package's messages and the standard ones; `standard`: standard messages only, as "
             "a real arm's drivers offer).",
             "- timing: the timing modes (minivla_core/timing.py) in which it carries anything: single commands "
             "go in free and lockstep, whole chunks with due times in timed.",
             "- in a demonstration bag: what `minivla record` records by default (graph.RECORDED); `minivla "
             "bag2data` refuses a bag without a required one.", "",
             "| topic | type | QoS | published by | subscribed by | bridge.interface | timing "
             "| in a demonstration bag |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [topic_row(topic.absolute, topic) for topic in graph.TOPICS]
    lines.append(topic_row("/" + graph.image_topic("<name>", scene_camera=False), dataclasses.replace(
        graph.IMAGE, recorded=False, required=False), publishers="sim_bridge (each of env.extra_cameras)"))
    lines += ["", "QoS: " + "; ".join(f"{name}: {words}" for name, words in graph.QOS_WORDS.items())
              + " (minivla_ros/graph.py says why each).", "", "## Services", "",
              "| service | type | served by | what a call does |", "| --- | --- | --- | --- |"]
    lines += [f"| `/{service.name}` | `{service.type}` | {service.server} | {cell(service.what)} |"
              for service in graph.SERVICES]
    lines += ["", "## Nodes", "", "| executable | module |", "| --- | --- |"]
    lines += [f"| {name} | `{module}` |" for name, module in graph.NODES.items()]
    return "\n".join(lines) + "\n"


PAGES = {"parameters.md": parameters_page, "topics.md": topics_page}


def stale_pages(docs_dir: Path) -> list[Path]:
    """The pages under `docs_dir` that are missing or differ from what the code generates now."""
    stale = []
    for name, make in PAGES.items():
        path = docs_dir / name
        if not path.exists() or path.read_text() != make():
            stale.append(path)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) the generated reference pages in docs/.")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is missing or stale")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="the folder of the pages (default: docs/)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages(args.docs)
        for path in stale:
            print(f"error: {path} is stale: run .venv/bin/python scripts/make_docs.py", file=sys.stderr)
        return 1 if stale else 0
    args.docs.mkdir(parents=True, exist_ok=True)
    for name, make in PAGES.items():
        (args.docs / name).write_text(make())
        print(f"wrote {args.docs / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
