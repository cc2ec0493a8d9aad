"""The `minivla` command in layers: the core's commands (minivla_core/cli.py) never import ROS, the ROS side's
(minivla_ros/cli.py) are added by minivla.py, and without minivla_ros or rclpy the core's still work while the
ROS ones say what to install. Checked in a fresh interpreter where importing minivla_ros or rclpy fails."""

import ast
import subprocess
import sys
import textwrap

from minivla_test_utils import ROOT

# A Python prelude under which `import minivla_ros` and `import rclpy` fail, as on a machine without them.
BLOCK = """
import sys

class NoRos:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, NoRos())
"""


def run_without(blocked: tuple[str, ...], script: str) -> subprocess.CompletedProcess:
    code = f"BLOCKED = {blocked!r}\n" + BLOCK + textwrap.dedent(script)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_every_core_module_imports_and_the_core_commands_parse_without_ros():
    result = run_without(("minivla_ros", "rclpy"), """
        import importlib, pkgutil
        import minivla_core
        from minivla_core import cli
        from minivla_core.config import Config

        modules = [m.name for m in pkgutil.walk_packages(minivla_core.__path__, "minivla_core.")]
        assert "minivla_core.cli" in modules and "minivla_core.envs.base" in modules, modules
        for name in modules:
            importlib.import_module(name)
        parser = cli.build_parser()
        for argv, expected in [
            (["collect", "--task", "reach-v3", "--episodes", "2"], {"env": {"task": "reach-v3"},
                                                                   "collect": {"episodes": 2}}),
            (["train", "--epochs", "1", "--set", "model.d_model=64"], {"train": {"epochs": 1},
                                                                      "model": {"d_model": 64}}),
            (["eval", "--tasks", "push-v3", "reach-v3"], {"eval": {"tasks": ["push-v3", "reach-v3"]}}),
            (["info", "--checkpoint", "x.pt"], {"eval": {"checkpoint": "x.pt"}}),
        ]:
            given = cli.read_settings(parser.parse_args(argv))
            assert given == expected, (argv, given)
            Config.from_dict(given)
        assert cli.main(["info", "--checkpoint", "checkpoints/push_v3.pt"]) == 0
        ros = sorted(name for name in sys.modules if name.split(".")[0] in ("minivla_ros", "rclpy"))
        assert not ros, ros
        print("core ok")
    """)
    assert result.returncode == 0 and "core ok" in result.stdout, result.stdout[-2000:] + result.stderr[-4000:]


def test_without_minivla_ros_the_core_commands_work_and_the_ros_ones_say_what_to_install():
    result = run_without(("minivla_ros", "rclpy"), """
        import contextlib, io
        import minivla

        assert minivla.main(["info", "--checkpoint", "checkpoints/push_v3.pt"]) == 0
        for argv in (["run", "--episodes", "1"], ["bag2data", "some/bag", "--out", "x"], ["teleop"]):
            errors = io.StringIO()
            with contextlib.redirect_stderr(errors):
                assert minivla.main(argv) == 2, argv
            print(errors.getvalue().strip())
    """)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    lines = result.stdout.strip().splitlines()[-3:]
    for line, command in zip(lines, ("run", "bag2data", "teleop")):
        assert line.startswith(f"error: `minivla {command}` needs the ROS 2 side, the minivla_ros package"), line
        assert "scripts/setup.sh" in line and "colcon" in line, line


def test_without_rclpy_the_ros_commands_parse_and_say_what_they_need():
    """minivla_ros/cli.py imports no rclpy: `minivla run --help` works, running it names what is missing."""
    result = run_without(("rclpy",), """
        import contextlib, io
        import minivla

        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            try:
                minivla.main(["run", "--help"])
            except SystemExit as exc:
                assert exc.code == 0
        assert "Timing modes" in text.getvalue()
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            assert minivla.main(["run", "--episodes", "1"]) == 2
        print(errors.getvalue().strip())
    """)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("error: `minivla run` needs the ROS 2 side (rclpy and the minivla_ros messages)"), last
    assert "rclpy" in last and "scripts/setup.sh" in last, last


def ros_imports(path) -> list[str]:
    """Where a Python file imports minivla_ros or rclpy: import statements, and importlib / __import__ calls
    whose argument names one."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Call):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func in ("import_module", "__import__", "find_spec", "find_loader"):
                names = [arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
        found += [f"{path.relative_to(ROOT)}:{node.lineno} {name}" for name in names
                  if name.split(".")[0] in ("minivla_ros", "rclpy")]
    return found


def test_no_file_of_the_core_imports_ros():
    files = sorted((ROOT / "minivla_core").rglob("*.py"))
    assert ROOT / "minivla_core" / "cli.py" in files
    assert [hit for path in files for hit in ros_imports(path)] == []
    assert ros_imports(ROOT / "minivla_ros" / "cli.py")  # the check sees an import where there is one


def test_the_ros_commands_come_from_the_ros_side_under_their_names():
    import minivla
    from minivla_core import cli
    from minivla_ros import cli as ros_cli

    assert tuple(ros_cli.COMMANDS) == minivla.ROS_COMMANDS  # the stand-ins carry the same names
    assert not set(cli.COMMANDS) & set(ros_cli.COMMANDS)
    assert list(minivla.commands()) == [*cli.COMMANDS, *ros_cli.COMMANDS]
    assert all(command.run is not None and not command.unavailable for command in minivla.commands().values())
    core_only = subprocess.run([sys.executable, "-m", "minivla_core.cli", "run"], cwd=ROOT, capture_output=True,
                               text=True, timeout=120)
    assert core_only.returncode == 2 and "invalid choice: 'run'" in core_only.stderr, core_only.stderr
