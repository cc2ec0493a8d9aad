"""The policy node with every chunk it samples held back for a fixed time before it is published, as if inference
were that much slower (a slow computer, a remote GPU). Benchmarks only (bench/bench_graph.py runs it through
bringup.run(policy_module=...)); it is not a parameter of the production node.

    MINIVLA_BENCH_SAMPLING_DELAY=0.1 python -m bench.slow_policy_node --ros-args ...
"""

from __future__ import annotations

import os
import time

from minivla_core.model.policy import PolicyRunner
from minivla_ros import policy_node

DELAY_VARIABLE = "MINIVLA_BENCH_SAMPLING_DELAY"  # seconds added to every sampling call


def slowed(sample, delay: float):
    def slow_sample(self, *args, **kwargs):
        chunk = sample(self, *args, **kwargs)
        time.sleep(delay)
        return chunk
    return slow_sample


def main() -> None:
    delay = float(os.environ.get(DELAY_VARIABLE, "0"))
    if delay < 0:
        raise SystemExit(f"error: {DELAY_VARIABLE} must be >= 0 seconds, got {delay}")
    PolicyRunner.sample_continuing = slowed(PolicyRunner.sample_continuing, delay)  # timed timing samples here
    policy_node.main()


if __name__ == "__main__":
    main()
