"""sensor_msgs/Image bytes -> an (H, W, 3) uint8 RGB array, with every header field checked.

Numpy only (no rclpy, no cv_bridge), so the policy node and bag2data read images the same way.
A row of an image message is `step` bytes, of which the first width x 3 are pixels and the rest
padding (drivers align rows); the data must be exactly height x step bytes.
"""

from __future__ import annotations

import numpy as np

ENCODINGS = ("rgb8", "bgr8")


def decode_image(data, height: int, width: int, step: int, encoding: str) -> np.ndarray:
    """The image as RGB, or ValueError naming the field that is wrong."""
    if encoding not in ENCODINGS:
        raise ValueError(f"image encoding {encoding or '(none)'!r} is not supported ({' or '.join(ENCODINGS)})")
    if height <= 0 or width <= 0:
        raise ValueError(f"image is {width}x{height}: empty")
    row_bytes = 3 * width
    if step < row_bytes:
        raise ValueError(f"image step {step} is shorter than a row of {width} {encoding} pixels ({row_bytes} bytes)")
    pixels = np.frombuffer(data, dtype=np.uint8)
    if pixels.size != height * step:
        raise ValueError(f"image has {pixels.size} bytes of data, but height x step is {height} x {step} = "
                         f"{height * step}")
    image = pixels.reshape(height, step)[:, :row_bytes].reshape(height, width, 3)
    return np.ascontiguousarray(image[..., ::-1] if encoding == "bgr8" else image)
