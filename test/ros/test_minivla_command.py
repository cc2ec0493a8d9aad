"""`minivla run` says what it does: its --help against the parameter file and against what it prints, the launch
file's timing help against the file it keeps, and a dry run that ends, saying it was one."""

import json
import os
import subprocess
import sys
from pathlib import Path

from minivla_core.config import TIMINGS, RunConfig
from minivla_ros import bringup, graph
from minivla_ros import cli as ros_cli

ROOT = Path(__file__).resolve().parents[2]


def minivla(*args, timeout=120, **options):
    return subprocess.run([sys.executable, "-m", "minivla", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **options)


def test_run_help_gives_the_defaults_run_uses_and_what_it_prints_in_each_timing_mode():
    result = minivla("run", "--help", env={**os.environ, "COLUMNS": "1000"})
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    in_file = graph.params_file_values()
    assert f"[env.seed; default {in_file['env.seed']!r}, from config/sim_policy.yaml" in text
    assert "[policy_node.instruction; default empty]" in text and "wait for one" not in text
    assert "the task's own" in text
    assert f"Timing modes (--timing, run.timing: both nodes get it; default {RunConfig().timing})" in text
    assert all(f" {mode} " in text for mode in TIMINGS)

    # What the help says each mode prints is what summarize prints.
    status = {"active": True, "reason": "", "control_rate": 20.0, "achieved_rate": 19.5, "sampling_latency_p50_ms": 8.0,
              "sampling_latency_p99_ms": 12.0, "tick_jitter_p99_ms": 1.5, "ticks": 400, "dropped_ticks": 0,
              "instruction": "push the puck to the goal"}
    episodes = [{"episode": 0, "success": True, "steps": 80, "return": 1.0}]
    printed = {mode: bringup.summarize(bringup.RunResult("push-v3", episodes, status, mode, {"applied": 80.0}))
               for mode in TIMINGS}
    assert "no control rate or jitter" in text
    assert "jitter" not in printed["lockstep"] and "control rate" not in printed["lockstep"]
    assert "jitter" in printed["free"] and "control rate" in printed["free"] and "dropped ticks" in printed["free"]
    assert "held" in printed["timed"] and "actions applied" in printed["timed"]
    assert "steps held" in ros_cli.run_description() and "dropped ticks" in ros_cli.run_description()


def test_the_launch_timing_argument_says_the_parameter_file_runs_free():
    """Under `ros2 launch` an empty timing:= keeps the parameter file's, free; only `minivla run` defaults to
    run.timing (lockstep). The help used to say lockstep was the default there too."""
    in_file = graph.params_file_values()
    help_text = graph.sim_policy_argument_help()
    assert in_file["bridge.timing"] == in_file["policy_node.timing"] == "free"
    assert help_text["timing"].endswith("(sets bridge.timing and policy_node.timing; empty: params_file's, 'free' in "
                                        "sim_policy.yaml)"), help_text["timing"]
    assert "the default" not in help_text["timing"]
    assert help_text["seed"].endswith(f"'s, {in_file['env.seed']!r} in sim_policy.yaml)")
    source = (ROOT / "launch" / "sim_policy.launch.py").read_text()
    assert "graph.sim_policy_argument_help(" in source


def test_a_dry_run_ends_and_says_it_was_one(tmp_path):
    """policy_node.dry_run commands nothing, so no episode ends: `minivla run` used to wait forever for the policy
    to report itself active. Now it stops once the policy has sampled actions, and says so."""
    out = tmp_path / "run.json"
    result = minivla("run", "--episodes", "1", "--set", "policy_node.dry_run=true", "--json", out, timeout=300,
                     env=bringup.ros_environment())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "dry run (policy_node.dry_run): the policy sampled actions" in result.stdout, output[-4000:]
    assert "dry run, not sent" in result.stdout  # the node's own log: it computed, and sent nothing
    seed = graph.params_file_values()["env.seed"]
    assert f"seed {seed}," in result.stdout  # the bridge ran the parameter file's seed, as --help says
    assert "episode 0:" not in result.stdout and "policy active" not in result.stdout
    data = json.loads(out.read_text())
    assert data["dry_run"] is True and data["episodes"] == 0
    assert data["policy_status"]["reason"].startswith("dry run") and not data["policy_status"]["active"]
    assert data["policy_status"]["sampling_latency_p50_ms"] > 0
