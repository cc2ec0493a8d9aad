"""Putting one observation together from the messages that carry it, without ROS.

A robot sends the parts of what the policy sees on separate topics: one image per camera, the state (one message,
or a pose and a joint state), and in simulation an episode status. The policy node hands every part it receives
to an ObservationAssembler, which decides two things:

- Freshness. A part that has not come for `stale_after` seconds is stale; the node does not act on stale inputs
  and says which one (`why_stale`).
- Which parts belong together. With exact stamps (lockstep and timed timing), an observation is complete when every
  part carries the same stamp; each complete observation is delivered once, never one older than the current
  episode's start, and never an episode's final one (the simulator moves on to the next episode whatever the
  policy answers). Without exact stamps (free timing) the newest of each part is used (`newest`).

Stamps are (sec, nanosec) pairs, compared as such; times are a monotonic clock in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Stamp = tuple[int, int]


@dataclass
class EpisodeStatus:
    """The simulator's status part of an observation: which episode and step, and whether it is the last."""

    episode: int
    step: int
    final: bool


@dataclass
class SyncedObservation:
    """What the policy acts on: images (cameras, H, W, 3) uint8 and the state, of one stamp."""

    stamp: Stamp
    images: np.ndarray
    state: np.ndarray
    episode: int | None = None  # from the status part, when the observation has one
    step: int = 0


class ObservationAssembler:
    def __init__(self, cameras: int, state_parts: list[str], with_status: bool, stale_after: float,
                 exact: bool, labels: dict[str, str] | None = None):
        """`cameras` images ("camera 0" is the scene camera) and the state, concatenated from `state_parts` in
        order; with `with_status` also a "status" part (EpisodeStatus). `labels` name the parts in messages."""
        self.cameras, self.state_parts, self.exact = cameras, list(state_parts), exact
        self.parts = [f"camera {i}" for i in range(cameras)] + self.state_parts + (["status"] if with_status else [])
        self.labels = {part: part for part in self.parts} | (labels or {})
        self.stale_after = stale_after
        self.values: dict[str, Any] = {}
        self.stamps: dict[str, Stamp] = {}
        self.arrivals: dict[str, float] = {}
        self.delivered: Stamp | None = None  # the newest complete observation handed out
        self.episode_start: Stamp = (0, 0)  # nothing older than this is delivered

    def put(self, part: str, stamp: Stamp, value: Any, now: float) -> SyncedObservation | None:
        """One part arrived at `now`; with exact stamps, the observation it completes (if it does)."""
        if part not in self.parts:
            raise KeyError(f"unknown observation part {part!r}; parts are {self.parts}")
        self.values[part], self.stamps[part], self.arrivals[part] = value, stamp, now
        if not self.exact:
            return None
        if any(self.stamps.get(name) != stamp for name in self.parts):
            return None  # not complete yet
        if stamp == self.delivered or stamp < self.episode_start:
            return None  # delivered already, or of an episode before the current one
        self.delivered = stamp
        status = self.values.get("status")
        if status is not None and status.final:
            return None  # an episode's final observation: nothing to answer
        return self.observation(stamp)

    def start_episode(self, first_stamp: Stamp) -> None:
        """An episode starts with the observation of `first_stamp`: no older observation is delivered again."""
        self.episode_start = max(self.episode_start, first_stamp)

    def why_stale(self, now: float) -> str | None:
        """The first part (status aside) that has not come for stale_after seconds, described; None if all are
        fresh."""
        for part in self.parts:
            if part == "status":
                continue
            if now - self.arrivals.get(part, -float("inf")) > self.stale_after:
                return f"{self.labels[part]} is stale (none newer than {self.stale_after} s)"
        return None

    def newest(self) -> SyncedObservation | None:
        """The newest of each part (free timing), stamped as the scene camera's image; None until every part came."""
        if any(part not in self.values for part in self.parts if part != "status"):
            return None
        return self.observation(self.stamps["camera 0"])

    def observation(self, stamp: Stamp) -> SyncedObservation:
        images = np.stack([self.values[f"camera {i}"] for i in range(self.cameras)])
        parts = [np.asarray(self.values[part], dtype=np.float32).ravel() for part in self.state_parts]
        state = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        status = self.values.get("status")
        return SyncedObservation(stamp, images, state, status.episode if status else None,
                                 status.step if status else 0)
