"""pip install of the ROS-free side: `minivla_core` and the `minivla` command.

The distribution is called `minivla`, not `minivla_ros`: the ROS package of that name (msg/ and
the nodes) is built and installed by CMake (scripts/setup_ros.sh, or colcon), and two
installs under one name would delete each other. The command's module, minivla.py, adds the ROS
side's commands (minivla_ros/cli.py) where that package is installed; without it the core's work."""

from setuptools import find_packages, setup

setup(
    name="minivla",
    version="0.1.0",
    description="A tiny vision-language-action policy for Meta-World, with ROS 2 nodes",
    packages=find_packages(include=["minivla_core", "minivla_core.*"]),
    py_modules=["minivla"],
    python_requires=">=3.10",
    install_requires=["torch==2.13.0", "metaworld==3.1.1", "packaging", "numpy<2.3", "opencv-python-headless<5",
                      "pyyaml", "tqdm", "snowballstemmer", "matplotlib"],
    entry_points={"console_scripts": ["minivla = minivla:main"]},
)
