"""The one `main()` every node shares: init, spin, clean shutdown on Ctrl-C or external shutdown."""

from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException

from minivla_core.errors import MiniVLAError


def run_node(node_class, args=None) -> None:
    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (MiniVLAError, ValueError, FileExistsError) as exc:  # bad parameters: one clear line, exit 2
        print(f"error: {node_class.__name__}: {exc}", flush=True)
        raise SystemExit(2)
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
