"""The README's picture of `minivla eval --view`: three episodes of the bundled push checkpoint, looked at in headless
chromium (test/browser_view.py; scripts/setup_browser.sh installs it) once the run is over, saved as
docs/images/eval_view.jpg.

    .venv/bin/python scripts/screenshot_view.py [--checkpoint checkpoints/push_v3.pt] [--out docs/images/eval_view.jpg]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))

from browser_view import browser_missing_reason, free_port_pair, policy_view_layout, view_command  # noqa: E402
from minivla_core.checkpoint import read_checkpoint  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="checkpoints/push_v3.pt")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "docs/images/eval_view.jpg"))
    args = parser.parse_args()
    reason = browser_missing_reason()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    command = [sys.executable, "-m", "minivla", "eval", "--checkpoint", args.checkpoint, "--episodes",
               str(args.episodes), "--view", "--view-port", str(free_port_pair())]
    with tempfile.TemporaryDirectory() as scratch:
        camera = read_checkpoint(ROOT / args.checkpoint)["env"]["camera"]
        seen, output, code = view_command(command, Path(scratch) / "view.png", "minivla_eval",
                                          policy_view_layout(camera))
        if not seen.shown or code != 0:
            print(f"error: the view was not shown (exit {code}): {seen}\n{output[-2000:]}", file=sys.stderr)
            return 1
        image = cv2.imread(str(seen.screenshot))
    cv2.imwrite(args.out, image, [cv2.IMWRITE_JPEG_QUALITY, 80])  # a few hundred KB as PNG; JPEG keeps it small
    print(output.strip().splitlines()[-3] if output.strip() else "")
    print(f"views: {', '.join(seen.views)}; shown after {seen.seconds:.0f} s; written: {args.out} "
          f"({Path(args.out).stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
