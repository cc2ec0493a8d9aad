"""Lifecycle transitions a managed node survives whatever it is asked.

rclpy's change_state service triggers the requested transition in rcl's state machine before it looks at the
node; a transition that is not registered from the current state (activate while unconfigured, cleanup while
active, ...) raises RCLError inside the service callback, which ends the executor: the node dies, and the caller
never gets an answer. `guard_transitions` puts a check in front of the service: a transition that is not valid
from the current state answers success=false, says why in the log and leaves the node where it was. One
exception, for safety: cleanup while active deactivates first (the node holds the robot), then cleans up.
"""

from __future__ import annotations

from lifecycle_msgs.msg import Transition
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn


def current_state(node: LifecycleNode) -> str:
    """The node's lifecycle state: unconfigured, inactive, active, finalized (or a transition state)."""
    return node._state_machine.current_state[1]


def available(node: LifecycleNode) -> dict[int, str]:
    """Transition id -> label, of the transitions registered from the node's current state."""
    return {t[0]: t[1] for t in node._state_machine.available_transitions}


def guard_transitions(node: LifecycleNode) -> None:
    """Answer success=false to a transition request that is not valid from the node's current state (instead of
    dying); cleanup while active deactivates first."""
    service = node._service_change_state  # rclpy has no public hook before the transition is triggered
    trigger = service.callback

    def guarded(request, response):
        transitions = available(node)
        wanted = request.transition.label or request.transition.id
        state = current_state(node)
        if wanted in (Transition.TRANSITION_CLEANUP, "cleanup") and state == "active":
            node.get_logger().warning("cleanup while active: deactivating first (the robot holds)")
            if node.trigger_deactivate() != TransitionCallbackReturn.SUCCESS:
                response.success = False
                return response
            return trigger(request, response)
        if wanted not in transitions and wanted not in transitions.values():
            node.get_logger().error(f"lifecycle transition {wanted!r} is not valid from state {state!r} (valid: "
                                    f"{', '.join(sorted(transitions.values()))}): refused, the node stays {state}")
            response.success = False
            return response
        return trigger(request, response)

    service.callback = guarded
