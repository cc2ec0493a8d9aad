"""Store one observation and the chunk each bundled checkpoint samples for it (test/test_golden.py).

    .venv/bin/python test/golden/make_golden.py     # after re-bundling a checkpoint, on purpose

The observation is a real one (the first of layout 0 at the evaluation seed, 1000), stored with the chunk so
the test needs no rendering: it checks that loading, preprocessing and sampling still turn that observation
into the same actions.
"""

import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from minivla_core.checkpoint import load_policy  # noqa: E402
from minivla_core.config import EnvConfig  # noqa: E402
from minivla_core.envs.metaworld_env import MetaWorldEnv, instruction_for  # noqa: E402
from minivla_core.evaluate import env_config_for  # noqa: E402
from minivla_core.model.policy import PolicyRunner  # noqa: E402

BUNDLED = ("push_v3.pt", "multitask.pt")
SEED = 0  # sampler noise


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    for name in BUNDLED:
        checkpoint = ROOT / "checkpoints" / name
        policy, payload = load_policy(checkpoint)
        task = payload["env"]["task"]
        config = env_config_for(payload["env"], EnvConfig(), task)
        config.seed = 1000
        observation = MetaWorldEnv(config).reset(0)
        instruction = instruction_for(task)
        chunk = PolicyRunner(policy, instruction, seed=SEED).sample_chunk(observation.images, observation.state)
        out = Path(__file__).with_name(Path(name).stem + ".npz")
        np.savez_compressed(out, images=observation.images, state=observation.state, instruction=instruction,
                            seed=SEED, chunk=chunk, checkpoint_sha256=sha256(checkpoint))
        print(f"{out.relative_to(ROOT)}: {task}, {instruction!r}, first action {np.round(chunk[0], 4).tolist()}")


if __name__ == "__main__":
    main()
