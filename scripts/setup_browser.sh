#!/usr/bin/env bash
# The headless browser that test/browser_view.py drives to look at rerun's web viewer (minivla eval --view): Debian's
# chromium package and playwright in .venv. Playwright's own browser downloads are not used (they need its download
# servers; Debian's chromium comes from the apt mirror the rest of setup uses).
# Safe to run again: it returns at once when both are in place. Exits non-zero with one line saying why when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

# playwright only promises to drive the chromium build it ships with; 1.65.2 is the version checked against Debian 12's
# chromium (150), so it is pinned: another release may speak a protocol that chromium does not.
PLAYWRIGHT_VERSION=1.65.2

fail() { echo "[setup_browser] error: $*" >&2; exit 1; }

[ -x .venv/bin/python ] || fail "no .venv/bin/python: run scripts/setup.sh first"

if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed" || [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""
  elif command -v sudo >/dev/null; then SUDO="sudo"
  else fail "chromium is not installed, and installing it needs root or sudo (apt-get install chromium)"
  fi
  echo "[setup_browser] installing Debian's chromium"
  install=($SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium)
  # Package lists only when the install fails on stale or missing ones: an update costs a minute.
  "${install[@]}" >/dev/null 2>&1 || { $SUDO apt-get update -qq && "${install[@]}"; } \
    || fail "apt-get could not install chromium"
  [ -x /usr/bin/chromium ] || fail "chromium is installed but /usr/bin/chromium is missing"
fi

installed="$(.venv/bin/python -c 'from importlib.metadata import version; print(version("playwright"))' 2>/dev/null || true)"
if [ "$installed" != "$PLAYWRIGHT_VERSION" ]; then
  echo "[setup_browser] installing playwright==$PLAYWRIGHT_VERSION into .venv"
  # This machine's pip config names local indexes that warn on every package; keep the log readable.
  # (pipefail: the pipeline fails when pip does.)
  .venv/bin/python -m pip install -q "playwright==$PLAYWRIGHT_VERSION" 2>&1 \
    | { grep -vE "WARNING: Location 'file://|^\s*$" || true; } || fail "pip could not install playwright==$PLAYWRIGHT_VERSION"
fi
echo "[setup_browser] ready: /usr/bin/chromium ($(/usr/bin/chromium --version 2>/dev/null | head -1)), playwright $PLAYWRIGHT_VERSION"
