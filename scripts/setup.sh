#!/usr/bin/env bash
# Set up a fresh Debian 12 machine for minivla: the apt packages headless MuJoCo rendering needs,
# a .venv at the repo root with every Python dependency and the `minivla` command, and ROS 2
# Jazzy (PyPI wheels) with this package's messages and nodes built into the same .venv.
# Safe to run again: it skips what is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# EGL + Mesa for offscreen rendering (MUJOCO_GL=egl), ffmpeg-free mp4 writing goes through OpenCV.
APT_PACKAGES="libegl1 libegl-mesa0 libgl1-mesa-dri libglx-mesa0 python3-venv"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  echo "[setup] installing apt packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi

# This machine's pip config names local indexes that warn on every package; keep the log readable.
quiet() { "$@" 2>&1 | { grep -vE "WARNING: Location 'file://|^\s*$" || true; }; }

stamp=.venv/.minivla-setup
want="$(cat requirements.txt setup.py scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing Python packages into .venv"
  quiet .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  quiet .venv/bin/python -m pip install -q -r requirements.txt
  # compat mode: a .pth file puts the repo root on sys.path, so minivla_core and the hand-written
  # minivla_ros modules are used from the source tree (the generated messages come from cmake).
  pip_editable=(.venv/bin/python -m pip install --no-build-isolation --no-deps -e . --config-settings editable_mode=compat)
  "${pip_editable[@]}" -q >/dev/null 2>&1 || "${pip_editable[@]}"  # on failure, again with its output
  echo "$want" > "$stamp"
fi
# ROS 2 Jazzy from PyPI wheels, and this package's interfaces and nodes built into .venv.
# The Python sources stay the editable install above (MINIVLA_INSTALL_PYTHON_SOURCES=OFF).
MINIVLA_INSTALL_PYTHON_SOURCES=OFF bash scripts/setup_ros.sh .venv
echo "[setup] ready: .venv/bin/minivla"
