"""minivla_ros: ROS 2 nodes for the minivla policy; minivla_ros.msg holds the generated interfaces."""
__path__ = __import__('pkgutil').extend_path(__path__, __name__)
