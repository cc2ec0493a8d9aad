"""The one `main()` every node shares: init, spin, clean shutdown on Ctrl-C or external shutdown.

A managed node that is active when it is stopped is deactivated first (the policy node holds the robot: a zero
twist for a velocity interface) and shut down through its lifecycle, so Ctrl-C never leaves a robot that keeps its
last velocity moving.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode
from rclpy.signals import SignalHandlerOptions

from minivla_core.errors import MiniVLAError
from minivla_ros.lifecycle import current_state
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


# How long the executor waits for work before it looks at the stop flag again: the most a stop request waits.
STOP_CHECK_SECONDS = 0.1
# How long a managed node stopping waits for its last messages (the hold) to be acknowledged by their subscribers.
HOLD_ACK_SECONDS = 1.0
# How long a node has to end once asked to stop: its wind-down, clean-up and middleware shutdown. After that the
# kernel ends it (SIGALRM). The same 10 s that `minivla run` (bringup.stop_processes) and `ros2 launch` (5 s to
# SIGTERM, 5 more to SIGKILL) give a node before they kill it; here it also holds when nobody is left to kill it.
STOP_DEADLINE_SECONDS = 10


def wind_down(node) -> None:
    """A managed node before it is destroyed: if active, deactivated (on_deactivate: the policy node holds), with up
    to HOLD_ACK_SECONDS for what it published to be acknowledged; then shut down (on_shutdown frees what configure
    made). A plain node: nothing to do."""
    if not isinstance(node, LifecycleNode):
        return
    if current_state(node) == "active":
        node.trigger_deactivate()
        deadline = time.monotonic() + HOLD_ACK_SECONDS
        for publisher in node.publishers:
            publisher.wait_for_all_acked(Duration(seconds=max(0.0, deadline - time.monotonic())))
    if current_state(node) in ("unconfigured", "inactive"):
        node.trigger_shutdown()


def run_node(node_class, args=None) -> None:
    """Spin one node until Ctrl-C, SIGTERM or an external shutdown, then wind it down (wind_down: a managed node
    holds and shuts down), destroy it (its clean-up: a recorder closes its bag) and shut down.

    The signals set a flag that the loop checks at least every STOP_CHECK_SECONDS, and rclpy installs no handlers
    of its own. With rclpy's handlers and a wait without end (`rclpy.spin`), about one SIGINT in 15 went unheeded
    under load: the node sat in rcl_wait until it was killed 10 s later, and a recorder killed there loses the
    end of its bag (measured: 4 hangs in 68 two-episode recordings, 3 of them the recorder's, with 2 parallel
    recordings on 2 cores; none in 28 with this loop).

    Once asked to stop, a node has STOP_DEADLINE_SECONDS to end; then the kernel ends it (exit status -SIGALRM)."""
    follow_parent()
    stop = threading.Event()

    def request_stop(number, frame):
        if not stop.is_set():
            # A deadline the kernel keeps (SIGALRM's default action ends the process), so that a shutdown that
            # hangs in the middleware, holding the interpreter's lock where no Python watchdog could run, still
            # ends. Seen once in CI: after `minivla run` was killed outright, a node was alive 15 s after its SIGTERM.
            signal.alarm(STOP_DEADLINE_SECONDS)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = node_class()
        refuse_unknown_parameters(node)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=STOP_CHECK_SECONDS)
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
            if rclpy.ok():  # after an external shutdown nothing can be published any more
                wind_down(node)
            node.destroy_node()
        rclpy.try_shutdown()
