"""Camera messages -> the (size, size, 3) uint8 RGB image a policy reads, with every header field checked.

Numpy and OpenCV only (no rclpy, no cv_bridge), so the policy node (rclpy messages) and bag2data
(rosbags messages) read images the same way: both message kinds have the same fields.

- sensor_msgs/Image: a row is `step` bytes, of which the first width x channels are pixels and the
  rest padding (drivers align rows); the data must be exactly height x step bytes. Encodings:
  rgb8, bgr8, rgba8, bgra8 (alpha dropped) and mono8 (grey copied to three channels).
- sensor_msgs/CompressedImage: jpeg or png, decoded by OpenCV.
- Any size: the centre square is cut out (a 640x480 camera loses 80 columns each side) and resized
  to the size the checkpoint was trained at. A square image of that size passes unchanged.
"""

from __future__ import annotations

import cv2
import numpy as np

CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}  # encoding -> bytes per pixel
ENCODINGS = tuple(CHANNELS)
MAX_PIXELS = 4096 * 4096  # larger than any camera we expect; a bigger header is a mistake or an attack


def decode_image(data, height: int, width: int, step: int, encoding: str) -> np.ndarray:
    """An Image message's pixels as RGB, or ValueError naming the field that is wrong."""
    if encoding not in CHANNELS:
        raise ValueError(f"image encoding {encoding or '(none)'!r} is not supported ({', '.join(ENCODINGS)})")
    if height <= 0 or width <= 0:
        raise ValueError(f"image is {width}x{height}: empty")
    if height * width > MAX_PIXELS:
        raise ValueError(f"image is {width}x{height}: more than {MAX_PIXELS} pixels")
    channels = CHANNELS[encoding]
    row_bytes = channels * width
    if step < row_bytes:
        raise ValueError(f"image step {step} is shorter than a row of {width} {encoding} pixels ({row_bytes} bytes)")
    pixels = np.frombuffer(data, dtype=np.uint8)
    if pixels.size != height * step:
        raise ValueError(f"image has {pixels.size} bytes of data, but height x step is {height} x {step} = "
                         f"{height * step}")
    image = pixels.reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if encoding == "mono8":
        return np.repeat(image, 3, axis=2)
    if encoding.startswith("bgr"):
        return np.ascontiguousarray(image[..., 2::-1])
    return np.ascontiguousarray(image[..., :3])


def decode_compressed(data, format: str) -> np.ndarray:
    """A CompressedImage message's picture as RGB, or ValueError. `format` is e.g. "jpeg", "png" or
    "rgb8; jpeg compressed bgr8" (image_transport's form)."""
    words = format.lower().replace(";", " ").split()
    if not any(word in ("jpeg", "jpg", "png") for word in words):
        raise ValueError(f"compressed image format {format or '(none)'!r} is not supported (jpeg or png)")
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if image is None:
        raise ValueError(f"compressed image ({len(buffer)} bytes, {format}) could not be decoded")
    return np.ascontiguousarray(image[..., ::-1])  # OpenCV decodes to BGR


def fit_image(image: np.ndarray, size: int) -> np.ndarray:
    """The centre square of `image`, resized to size x size (area averaging when shrinking)."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(square)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)


def image_from_msg(msg, size: int) -> np.ndarray:
    """An Image or CompressedImage message (rclpy's or rosbags') -> (size, size, 3) uint8 RGB, or ValueError."""
    if hasattr(msg, "format"):
        image = decode_compressed(msg.data, msg.format)
    else:
        image = decode_image(msg.data, msg.height, msg.width, msg.step, msg.encoding)
    return fit_image(image, size)
