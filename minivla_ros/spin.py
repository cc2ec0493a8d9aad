"""The one `main()` every node shares: init, spin, clean shutdown on Ctrl-C or external shutdown."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

import rclpy
from rclpy.executors import ExternalShutdownException

from minivla_core.errors import MiniVLAError
from minivla_ros.params import refuse_unknown_parameters


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def follow_parent() -> None:
    """A node started by `minivla run` or `record` (MINIVLA_PARENT_PID set) ends when that process ends,
    even when it is killed outright: it must never go on simulating or commanding as an orphan."""
    parent = os.environ.get("MINIVLA_PARENT_PID")
    if not parent or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # the parent died before the line above took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run_node(node_class, args=None) -> None:
    follow_parent()
    # Ctrl-C and SIGTERM: rclpy's own handler shuts the context down and spin() ends with
    # ExternalShutdownException at a defined point. Python's default handler would also raise
    # KeyboardInterrupt wherever the node happens to be, e.g. half-way through building one of the
    # executor's tasks, which then fails again in its __del__ and prints a traceback on the way out.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        refuse_unknown_parameters(node)
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (MiniVLAError, ValueError, FileExistsError) as exc:  # bad parameters: one clear line, exit 2
        print(f"error: {node_class.__name__}: {exc}", flush=True)
        raise SystemExit(2)
    except Exception:
        if rclpy.ok():  # a real error; otherwise a callback raced the shutdown (e.g. publish on a dead context)
            raise
    finally:
        # A terminal's Ctrl-C reaches a launched node twice (terminal and launch): let the second one
        # not interrupt the clean-up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
