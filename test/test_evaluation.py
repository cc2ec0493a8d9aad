"""The seed roles (collection, validation, test) and `minivla eval --suite`: the MT50 lists, the difficulty-group
table, the role every figure states, and one real suite run written as JSON and markdown."""

import json
import subprocess
import sys

import pytest

from minivla_test_utils import ROOT
from minivla_core.config import (SEED_ROLES, TEST_SEED, VALIDATION_SEED, COLLECTION_SEED, Config, check_seed_role,
                                 figure_label, seed_role)
from minivla_core.envs.metaworld_env import task_names  # sets MUJOCO_GL before Meta-World loads MuJoCo
from minivla_core.envs.metaworld_suites import (DIFFICULTY_GROUPS, PUBLISHED, SUITES, group_table,
                                                group_table_markdown, suite_tasks)
from minivla_core.errors import ConfigError, TaskError


def minivla(*args):
    return subprocess.run([sys.executable, "-m", "minivla", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_the_difficulty_groups_partition_metaworlds_mt50_and_mt10_is_metaworlds():
    from metaworld.env_dict import MT10_V3, MT50_V3

    assert list(MT50_V3) == task_names()

    sizes = {group: len(tasks) for group, tasks in DIFFICULTY_GROUPS.items()}
    assert sizes == {"easy": 28, "medium": 11, "hard": 6, "very hard": 5}
    every = [task for tasks in DIFFICULTY_GROUPS.values() for task in tasks]
    assert len(every) == len(set(every)) == 50  # no task in two groups
    assert set(every) == set(MT50_V3) and set(SUITES["mt50"]) == set(MT50_V3)
    assert list(SUITES["mt10"]) == list(MT10_V3)


def test_a_suite_is_mt50_mt10_or_a_list_of_mt50_tasks():
    assert len(suite_tasks("mt50")) == 50 and suite_tasks("MT10") == list(SUITES["mt10"])
    assert suite_tasks("push-v3, reach-v3") == ["push-v3", "reach-v3"]
    with pytest.raises(TaskError, match=r"push is not among the 50 Meta-World MT50 tasks \(did you mean push-v3\?\)"):
        suite_tasks("push,reach-v3")
    with pytest.raises(TaskError, match="fetch-push is not among"):
        suite_tasks("fetch-push")
    with pytest.raises(TaskError, match="push-v3 more than once"):
        suite_tasks("push-v3,push-v3")
    with pytest.raises(TaskError, match="names no task"):
        suite_tasks(" , ")


def test_the_group_table_is_the_mean_of_the_four_group_means():
    rates = {task: {"easy": 1.0, "medium": 0.5, "hard": 0.0}.get(group, 0.0)
             for group, tasks in DIFFICULTY_GROUPS.items() for task in tasks}
    rates["shelf-place-v3"] = 1.0  # one of the five very hard tasks: 20%
    table = group_table(rates)
    figures = {group: row["success"] for group, row in table["groups"].items()}
    assert figures == pytest.approx({"easy": 100.0, "medium": 50.0, "hard": 0.0, "very hard": 20.0})
    assert table["average"] == pytest.approx((100 + 50 + 0 + 20) / 4)  # not the mean over 50 tasks (70.6)
    assert table["complete"] and all(row["missing"] == [] for row in table["groups"].values())
    page = group_table_markdown(table, "ours")
    assert "| **ours** | 100.0 | 50.0 | 0.0 | 20.0 | **42.5** | ours, measured here |" in page
    assert page.count("their protocol, their numbers") == len(PUBLISHED) == 5
    assert "not comparable" not in page


def test_a_partial_suite_says_which_tasks_each_group_holds_and_is_not_comparable():
    table = group_table({"push-v3": 1.0, "reach-v3": 0.5, "door-open-v3": 0.0})
    groups = table["groups"]
    assert (groups["easy"]["tasks"], groups["easy"]["of"], groups["easy"]["success"]) == (2, 28, 25.0)
    assert (groups["hard"]["tasks"], groups["hard"]["success"]) == (1, 100.0)
    assert groups["medium"]["success"] is None and len(groups["medium"]["missing"]) == 11
    assert table["average"] == pytest.approx(62.5) and not table["complete"]
    page = group_table_markdown(table, "ours")
    assert "easy (2/28)" in page and "| **ours** | 25.0 | - | 100.0 | - | **62.5** |" in page
    assert "not comparable with the published rows" in page
    with pytest.raises(TaskError, match="fetch-push"):
        group_table({"fetch-push": 1.0})


def test_the_published_averages_are_the_mean_of_their_groups():
    """A typo in a copied row shows: each published average is the mean of its four group figures."""
    for name, (*groups, average) in PUBLISHED.items():
        assert sum(groups) / 4 == pytest.approx(average, abs=0.051), name


def test_every_seed_plays_exactly_one_role():
    for seed in (0, 999, 1000, 1999, 2000, 4242, 2**32 - 1):
        assert sum(seed in seeds for seeds in SEED_ROLES.values()) == 1, seed
    assert [seed_role(s) for s in (COLLECTION_SEED, 999, VALIDATION_SEED, 1999, TEST_SEED, 2**32 - 1)] == [
        "collection", "collection", "validation", "validation", "test", "test"]
    assert figure_label(1000) == "validation figure (seed 1000, used to choose the recipe, image size and epoch)"
    assert figure_label(2001) == "test figure (seed 2001, never used to choose anything)"
    assert check_seed_role(0, "collection", "env.seed") == 0
    with pytest.raises(ConfigError, match="env.seed 1000 is a validation seed .* collection takes seeds 0..999"):
        check_seed_role(1000, "collection", "env.seed")
    with pytest.raises(ConfigError, match="eval.seed 999 is a collection seed"):
        Config.from_dict({"eval": {"seed": 999}})
    with pytest.raises(ConfigError, match="eval.suite .* and eval.tasks .* both say what to evaluate"):
        Config.from_dict({"eval": {"suite": "mt10", "tasks": ["push-v3"]}})


def test_the_collection_seeds_are_refused_for_eval_and_the_others_for_collect(tmp_path):
    cases = [(["eval", "--checkpoint", "checkpoints/push_v3.pt", "--seed", "0"],
              "eval.seed 0 is a collection seed (0..999: the layouts demonstrations are recorded on)"),
             (["collect", "--seed", "2000", "--episodes", "1", "--out", tmp_path / "data"],
              "env.seed 2000 is a test seed"),
             (["eval", "--checkpoint", "checkpoints/push_v3.pt", "--suite", "mt10", "--json", tmp_path / "x.md"],
              "ends in .md")]
    for args, message in cases:
        result = minivla(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and message in last, (message, last)
    assert not (tmp_path / "data").exists()


def test_eval_says_which_role_its_figure_has(tmp_path, tiny_checkpoint):
    for seed, label in ((None, "validation figure (seed 1000, used to choose the recipe"),
                        (2000, "test figure (seed 2000, never used to choose anything)")):
        out = tmp_path / f"{seed}.json"
        result = minivla("eval", "--checkpoint", tiny_checkpoint, "--episodes", "1", "--max-episode-steps", "3",
                         "--json", out, *(["--seed", seed] if seed else []))
        assert result.returncode == 0, result.stderr
        assert label in result.stdout
        data = json.loads(out.read_text())
        assert data["seed"] == (seed or 1000) and data["role"] == ("test" if seed else "validation")
        assert data["figure"].startswith(label)


def test_a_suite_run_writes_its_group_table_as_json_and_markdown(tmp_path, tiny_checkpoint):
    """The tiny checkpoint was trained on push-v3 alone: reach-v3 is run, counted and marked as not trained on.
    Without --episodes a suite runs the protocol's 10 episodes per task."""
    out = tmp_path / "suite.json"
    result = minivla("eval", "--checkpoint", tiny_checkpoint, "--suite", "push-v3,reach-v3", "--max-episode-steps",
                     "2", "--seed", "2000", "--json", out)
    assert result.returncode == 0, result.stderr
    assert "reach-v3" in result.stdout and "(not trained on)" in result.stdout
    assert "SmolVLA-0.45B (theirs)" in result.stdout and "test figure (seed 2000" in result.stdout
    data = json.loads(out.read_text())
    suite = data["suite"]
    assert suite["tasks"] == ["push-v3", "reach-v3"] and suite["not_trained"] == ["reach-v3"]
    assert data["per_task"]["push-v3"]["episodes"] == 10 and data["per_task"]["reach-v3"]["group"] == "easy"
    assert data["per_task"]["push-v3"]["trained"] and not data["per_task"]["reach-v3"]["trained"]
    assert suite["groups"]["hard"]["tasks"] == 1 and suite["groups"]["medium"]["success"] is None
    assert suite["groups"]["easy"]["success"] == pytest.approx(100 * data["per_task"]["reach-v3"]["success_rate"])
    assert not suite["complete"] and suite["published"]["note"] == "their protocol, their numbers"
    # The tiny checkpoint sees 32 px images from LeRobot's corner2 placement: the step limit and the instructions
    # (ours; --instructions lerobot gives LeRobot's descriptions) differ.
    assert suite["deviations"] == ["episodes end after 2 steps, not 500", "eval.instructions plain, not LeRobot's "
                                   "description of the task (eval.instructions lerobot)"]
    assert data["role"] == "test"
    page = out.with_suffix(".md").read_text()
    assert page.startswith("# Meta-World 2 tasks, LeRobot's protocol")
    assert "**Test figure (seed 2000" in page and "| reach-v3 | easy | " in page and "| no |" in page
    assert "their protocol, their numbers" in page and "- episodes end after 2 steps, not 500" in page


def test_workers_give_the_same_results_as_one_process(tmp_path, tiny_checkpoint):
    """eval.workers: tasks run in worker processes; every episode's outcome, steps and instruction are the same."""
    results = {}
    for workers in ("1", "2"):
        out = tmp_path / f"workers{workers}.json"
        result = minivla("eval", "--checkpoint", tiny_checkpoint, "--suite", "push-v3,reach-v3,drawer-open-v3",
                         "--episodes", "2", "--max-episode-steps", "20", "--seed", "2000", "--workers", workers,
                         "--instructions", "lerobot", "--json", out)
        assert result.returncode == 0, result.stderr
        results[workers] = json.loads(out.read_text())
    one, two = results["1"], results["2"]
    assert list(two["per_task"]) == ["push-v3", "reach-v3", "drawer-open-v3"]
    for task in one["per_task"]:
        assert two["per_task"][task]["per_episode"] == one["per_task"][task]["per_episode"]
    assert one["per_task"]["reach-v3"]["per_episode"][0]["instruction"] == "Reach a goal position"
    assert one["suite"]["groups"] == two["suite"]["groups"]


def test_a_worker_that_fails_ends_the_evaluation_with_its_error(tmp_path):
    """The Fetch checkpoint's camera does not exist in Meta-World's scene: the worker evaluating push-v3 fails, and
    its error arrives as the command's one error line, not as a hang or a traceback."""
    result = minivla("eval", "--checkpoint", ROOT / "checkpoints/fetch_push.pt", "--tasks", "fetch-push", "push-v3",
                     "--episodes", "1", "--max-episode-steps", "3", "--workers", "2")
    assert result.returncode == 2, result.stderr
    assert "error: unknown camera 'camera'" in result.stderr and "Traceback" not in result.stderr
    assert "leaked" not in result.stderr  # the workers' queues are closed, not left to the interpreter
