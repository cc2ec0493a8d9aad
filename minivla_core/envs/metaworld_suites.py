"""Meta-World suites as LeRobot reports them: which tasks a suite holds, the four difficulty groups, and the
published rows our group table stands beside.

What this module decides:
- A suite is "mt50" (all 50 v3 tasks), "mt10" (Meta-World's MT10) or task names separated by commas.
- The difficulty groups are LeRobot's (easy 28, medium 11, hard 6, very hard 5; they partition MT50): a group's
  figure is the mean of its tasks' success rates, and the average is the mean of the four group figures (so a hard
  task weighs more than an easy one, as in the published tables).
- A suite of fewer tasks gets each group's figure over the tasks it holds, and says how many of the group's tasks
  that is; its average is over the groups it touches, and it is marked as not comparable with the published rows.
- The published rows are copied from the papers with their protocol: their numbers, not measured here.

Pure data and arithmetic: importing this module imports neither Meta-World nor MuJoCo (test/test_evaluation.py
checks the lists against Meta-World's own MT50 and MT10 names).
"""

from __future__ import annotations

from minivla_core.errors import TaskError

DIFFICULTY_GROUPS = {
    "easy": ("button-press-v3", "button-press-topdown-v3", "button-press-topdown-wall-v3", "button-press-wall-v3",
             "coffee-button-v3", "dial-turn-v3", "door-close-v3", "door-lock-v3", "door-open-v3", "door-unlock-v3",
             "drawer-close-v3", "drawer-open-v3", "faucet-close-v3", "faucet-open-v3", "handle-press-v3",
             "handle-press-side-v3", "handle-pull-v3", "handle-pull-side-v3", "lever-pull-v3", "plate-slide-v3",
             "plate-slide-back-v3", "plate-slide-back-side-v3", "plate-slide-side-v3", "reach-v3", "reach-wall-v3",
             "window-close-v3", "window-open-v3", "peg-unplug-side-v3"),
    "medium": ("basketball-v3", "bin-picking-v3", "box-close-v3", "coffee-pull-v3", "coffee-push-v3", "hammer-v3",
               "peg-insert-side-v3", "push-wall-v3", "soccer-v3", "sweep-v3", "sweep-into-v3"),
    "hard": ("assembly-v3", "hand-insert-v3", "pick-out-of-hole-v3", "pick-place-v3", "push-v3", "push-back-v3"),
    "very hard": ("shelf-place-v3", "disassemble-v3", "stick-pull-v3", "stick-push-v3", "pick-place-wall-v3"),
}
GROUPS = tuple(DIFFICULTY_GROUPS)
GROUP_OF = {task: group for group, tasks in DIFFICULTY_GROUPS.items() for task in tasks}

SUITES = {
    "mt50": tuple(task for tasks in DIFFICULTY_GROUPS.values() for task in tasks),
    "mt10": ("reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
             "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3"),
}

# The instruction LeRobot's Meta-World protocol and its metaworld_mt50 dataset give each task (its
# metaworld_config.json). push-v3 and push-back-v3 share one: the camera has to tell them apart.
LEROBOT_DESCRIPTIONS = {
    "assembly-v3": "Pick up a nut and place it onto a peg",
    "basketball-v3": "Dunk the basketball into the basket",
    "bin-picking-v3": "Grasp the puck from one bin and place it into another bin",
    "box-close-v3": "Grasp the cover and close the box with it",
    "button-press-topdown-v3": "Press a button from the top",
    "button-press-topdown-wall-v3": "Bypass a wall and press a button from the top",
    "button-press-v3": "Press a button",
    "button-press-wall-v3": "Bypass a wall and press a button",
    "coffee-button-v3": "Push a button on the coffee machine",
    "coffee-pull-v3": "Pull a mug from a coffee machine",
    "coffee-push-v3": "Push a mug under a coffee machine",
    "dial-turn-v3": "Rotate a dial 180 degrees",
    "disassemble-v3": "Pick a nut out of a peg",
    "door-close-v3": "Close a door with a revolving joint",
    "door-lock-v3": "Lock the door by rotating the lock clockwise",
    "door-open-v3": "Open a door with a revolving joint",
    "door-unlock-v3": "Unlock the door by rotating the lock counter-clockwise",
    "hand-insert-v3": "Insert the gripper into a hole",
    "drawer-close-v3": "Push and close a drawer",
    "drawer-open-v3": "Open a drawer",
    "faucet-open-v3": "Rotate the faucet counter-clockwise",
    "faucet-close-v3": "Rotate the faucet clockwise",
    "hammer-v3": "Hammer a screw on the wall",
    "handle-press-side-v3": "Press a handle down sideways",
    "handle-press-v3": "Press a handle down",
    "handle-pull-side-v3": "Pull a handle up sideways",
    "handle-pull-v3": "Pull a handle up",
    "lever-pull-v3": "Pull a lever down 90 degrees",
    "peg-insert-side-v3": "Insert a peg sideways",
    "pick-place-wall-v3": "Pick a puck, bypass a wall and place the puck",
    "pick-out-of-hole-v3": "Pick up a puck from a hole",
    "reach-v3": "Reach a goal position",
    "push-back-v3": "Push the puck to a goal",
    "push-v3": "Push the puck to a goal",
    "pick-place-v3": "Pick and place a puck to a goal",
    "plate-slide-v3": "Slide a plate into a cabinet",
    "plate-slide-side-v3": "Slide a plate into a cabinet sideways",
    "plate-slide-back-v3": "Get a plate from the cabinet",
    "plate-slide-back-side-v3": "Get a plate from the cabinet sideways",
    "peg-unplug-side-v3": "Unplug a peg sideways",
    "soccer-v3": "Kick a soccer into the goal",
    "stick-push-v3": "Grasp a stick and push a box using the stick",
    "stick-pull-v3": "Grasp a stick and pull a box with the stick",
    "push-wall-v3": "Bypass a wall and push a puck to a goal",
    "reach-wall-v3": "Bypass a wall and reach a goal",
    "shelf-place-v3": "Pick and place a puck onto a shelf",
    "sweep-into-v3": "Sweep a puck into a hole",
    "sweep-v3": "Sweep a puck off the table",
    "window-open-v3": "Push and open a window",
    "window-close-v3": "Push and close a window",
}


def lerobot_description(task: str) -> str:
    """LeRobot's instruction for an MT50 task."""
    if task not in LEROBOT_DESCRIPTIONS:
        raise TaskError(f"{task} is not an MT50 task, so LeRobot's protocol gives it no description")
    return LEROBOT_DESCRIPTIONS[task]


def expand_suites(tasks: list[str]) -> list[str]:
    """Task names with "mt50" and "mt10" replaced by their tasks, each task once, in the order given."""
    expanded = []
    for name in tasks:
        for task in SUITES.get(name.strip().lower(), (name,)):
            if task not in expanded:
                expanded.append(task)
    return expanded


# LeRobot's evaluation protocol for Meta-World (src/lerobot/envs/metaworld.py and lerobot_eval.py)
PROTOCOL = {"camera": "corner2", "camera_position": [0.75, 0.075, 0.7], "observation": "proprio",
            "max_episode_steps": 500, "episodes": 10}

# Success % per group, then the average, as each paper reports it under its own protocol (not measured here).
PUBLISHED_SOURCE = "SmolVLA paper (Shukor et al., 2025), Table 2: Meta-World MT50, LeRobot's protocol"
PUBLISHED = {
    "Diffusion Policy": (23.1, 10.7, 1.9, 6.1, 10.5),
    "TinyVLA": (77.6, 21.5, 11.4, 15.8, 31.6),
    "pi0": (71.8, 48.2, 41.7, 30.0, 47.9),
    "SmolVLA-0.45B": (82.5, 41.8, 45.0, 60.0, 57.3),
    "SmolVLA-2.25B": (87.1, 51.8, 70.0, 64.0, 68.2),
}


def suite_tasks(suite: str) -> list[str]:
    """The tasks of a suite: "mt50", "mt10", or MT50 task names separated by commas (each once)."""
    name = suite.strip()
    if name.lower() in SUITES:
        return list(SUITES[name.lower()])
    tasks = [task.strip() for task in name.split(",") if task.strip()]
    if not tasks:
        raise TaskError(f"eval.suite {suite!r} names no task: give mt50, mt10 or task names separated by commas")
    unknown = [task for task in tasks if task not in GROUP_OF]
    if unknown:
        hints = [f"{task}-v3" for task in unknown if f"{task}-v3" in GROUP_OF]
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        raise TaskError(f"eval.suite: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not among the 50 "
                        f"Meta-World MT50 tasks{hint}; the suites are mt50, mt10, or MT50 names separated by commas")
    repeated = sorted({task for task in tasks if tasks.count(task) > 1})
    if repeated:
        raise TaskError(f"eval.suite names {', '.join(repeated)} more than once")
    return tasks


def suite_name(suite: str) -> str:
    """How a suite is named in results: mt50, mt10, or "N tasks"."""
    name = suite.strip().lower()
    return name if name in SUITES else f"{len(suite_tasks(suite))} tasks"


def group_table(success_rates: dict[str, float]) -> dict:
    """The difficulty-group table of per-task success rates (0..1, MT50 task names): for each group its figure in %
    (the mean over the group's tasks given; None when none is), how many of its tasks were given and which are
    missing; the average (the mean of the group figures present) and whether the table covers all of MT50, the only
    case comparable with PUBLISHED."""
    unknown = sorted(set(success_rates) - set(GROUP_OF))
    if unknown:
        raise TaskError(f"not MT50 tasks, so in no difficulty group: {', '.join(unknown)}")
    groups = {}
    for group, tasks in DIFFICULTY_GROUPS.items():
        given = [success_rates[task] for task in tasks if task in success_rates]
        groups[group] = {"success": 100 * sum(given) / len(given) if given else None, "tasks": len(given),
                         "of": len(tasks), "missing": [task for task in tasks if task not in success_rates]}
    present = [row["success"] for row in groups.values() if row["success"] is not None]
    return {"groups": groups, "average": sum(present) / len(present) if present else None,
            "complete": len(success_rates) == len(GROUP_OF)}


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def group_table_markdown(table: dict, ours: str) -> str:
    """The group table as markdown: our row (named `ours`), then the published rows, marked as theirs."""
    groups = table["groups"]
    header = " | ".join(f"{group} ({row['tasks']}/{row['of']})" if row["tasks"] < row["of"] else group
                        for group, row in groups.items())
    lines = [f"| policy | {header} | average | protocol |", "| --- |" + " --- |" * (len(groups) + 2)]
    coverage = "" if table["complete"] else f", {sum(r['tasks'] for r in groups.values())} of {len(GROUP_OF)} tasks"
    cells = " | ".join(percent(row["success"]) for row in groups.values())
    lines.append(f"| **{ours}** | {cells} | **{percent(table['average'])}** | ours, measured here{coverage} |")
    for name, figures in PUBLISHED.items():
        lines.append(f"| {name} | {' | '.join(f'{x:.1f}' for x in figures)} | their protocol, their numbers |")
    lines.append("")
    lines.append(f"Published rows: {PUBLISHED_SOURCE}.")
    if not table["complete"]:
        lines.append("Our row covers part of MT50 (each group's figure is over the tasks shown beside it): it is not "
                     "comparable with the published rows, which cover all 50 tasks.")
    return "\n".join(lines)
