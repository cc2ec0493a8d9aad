"""Nobody off this machine reaches the graph, and two runs on one host never share a ROS domain.

The probe plays an outsider: a participant that may only use this machine's non-loopback address,
with that address as its static peer (as another computer on the LAN would). With the project's
DDS profile (config/fastdds_loopback.xml) it must not discover the simulator bridge; a participant
on loopback, with the same profile, must (so the probe itself works).
"""

import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from minivla_ros import bringup, graph

ROOT = Path(__file__).resolve().parents[2]

LIST_TOPICS = textwrap.dedent("""
    import sys, time, rclpy
    rclpy.init()
    node = rclpy.create_node("probe")
    seen, end = set(), time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end and sys.argv[2] not in seen:
        rclpy.spin_once(node, timeout_sec=0.2)
        seen |= {name for name, _ in node.get_topic_names_and_types()}
    print(" ".join(sorted(seen)))
""")

OUTSIDER_PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>lan_only</transport_id>
        <type>UDPv4</type>
        <interfaceWhiteList><address>{address}</address></interfaceWhiteList>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="outsider" is_default_profile="true">
      <rtps>
        <userTransports><transport_id>lan_only</transport_id></userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
        <builtin>
          <initialPeersList><locator><udpv4><address>{address}</address></udpv4></locator></initialPeersList>
        </builtin>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


def lan_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def topics_seen(env: dict, seconds: float) -> set[str]:
    result = subprocess.run([sys.executable, "-c", LIST_TOPICS, str(seconds), graph.STATE.name],
                            env=env, capture_output=True, text=True, timeout=seconds + 30)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


@pytest.fixture
def bridge(node_process):
    """The simulator bridge, started as `minivla run` starts it; gives (its environment, its process)."""
    process, _ = node_process("sim_bridge")
    return bringup.ros_environment(), process


def test_only_loopback_participants_discover_the_graph(bridge, tmp_path):
    env, _ = bridge
    assert "/robot_state" in topics_seen(env, 30), "a participant on loopback should see the bridge"
    address = lan_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to probe from")
    profile = tmp_path / "outsider.xml"
    profile.write_text(OUTSIDER_PROFILE.format(address=address))
    outsider = {**env, "FASTRTPS_DEFAULT_PROFILES_FILE": str(profile), "FASTDDS_DEFAULT_PROFILES_FILE": str(profile),
                "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    assert "/robot_state" not in topics_seen(outsider, 6), f"a participant on {address} discovered the graph"


def test_every_socket_of_a_node_is_bound_to_loopback(bridge):
    """What the profile does, seen from the kernel: no listening UDP socket on 0.0.0.0 or a LAN address."""
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    env, process = bridge
    assert "/robot_state" in topics_seen(env, 30)  # the bridge is up, its sockets open
    sockets = subprocess.run(["ss", "-ulnpH"], capture_output=True, text=True).stdout.splitlines()
    ours = [line for line in sockets if f"pid={process.pid}," in line]
    assert ours, sockets
    # Fast DDS binds its receiving sockets to the allowed interface; its sending sockets carry an ephemeral port
    # and are never read. The well-known RTPS ports (7400 + 250 * domain + ...) must be on loopback only.
    base = 7400 + 250 * int(env["ROS_DOMAIN_ID"])
    listening = [line.split()[3] for line in ours if base <= int(line.split()[3].rsplit(":", 1)[1]) < base + 250]
    assert listening and all(address.startswith("127.0.0.1:") for address in listening), listening


def test_two_runs_never_share_a_domain():
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from minivla_ros import bringup; "
         "print(bringup.reserve_domain_id(), flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        taken = int(holder.stdout.readline())
        assert not bringup.lock_domain(taken), "a domain held by another run was handed out again"
        assert all(bringup.reserve_domain_id() != taken for _ in range(5))
    finally:
        holder.kill()
        holder.wait()
