"""ControlNet conditioning: what a ControlNet sees, made from a user's image.

Pure numpy and Pillow, no torch: the worker computes the edge map a job is conditioned on,
and web nodes (which never import torch) can compute the same map for a preview.

Canny edges as A1111's ControlNet extension makes them (OpenCV's `cv2.Canny(image, low,
high)`): 3x3 Sobel gradients of the grey image, non-maximum suppression along the
gradient's direction, then hysteresis: pixels above `high` are edges, pixels above `low`
are edges where they touch an edge. White edges on black, RGB, the image's size.
"""

import numpy as np
from PIL import Image

CANNY = "canny"
NONE = "none"  # the image is the conditioning already (an edge map made elsewhere)
MODULES = (CANNY, NONE)
# A1111's ControlNet defaults and slider range for the canny preprocessor.
DEFAULT_LOW_THRESHOLD = 100
DEFAULT_HIGH_THRESHOLD = 200
MAX_THRESHOLD = 255
# diffusers' and A1111's range for the ControlNet weight ("conditioning scale").
MAX_CONDITIONING_SCALE = 2.0


def check_thresholds(low: int, high: int) -> None:
    """Refuse thresholds canny_edges cannot use, with a message naming them."""
    if not (0 <= low <= MAX_THRESHOLD and 0 <= high <= MAX_THRESHOLD):
        raise ValueError(
            f"Canny thresholds must be 0 to {MAX_THRESHOLD}, not low {low} and high {high}."
        )
    if low > high:
        raise ValueError(
            f"The low canny threshold ({low}) must not be above the high one ({high})."
        )


def canny_edges(
    image: Image.Image,
    low_threshold: int = DEFAULT_LOW_THRESHOLD,
    high_threshold: int = DEFAULT_HIGH_THRESHOLD,
) -> Image.Image:
    """The canny edge map of `image`: white (255) edges on black, RGB, same size."""
    check_thresholds(low_threshold, high_threshold)
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    edges = canny_array(grey, float(low_threshold), float(high_threshold))
    return Image.fromarray(np.where(edges, 255, 0).astype(np.uint8), "L").convert("RGB")


def canny_array(grey: np.ndarray, low: float, high: float) -> np.ndarray:
    """Boolean edge mask of a 2-D grey array (0..255)."""
    gx, gy = _sobel(grey)
    # OpenCV's default (L2gradient=False) compares |gx| + |gy| with the thresholds.
    magnitude = np.abs(gx) + np.abs(gy)
    thin = _non_maximum_suppression(magnitude, gx, gy)
    strong = thin > high
    weak = thin > low
    return _hysteresis(strong, weak)


def _sobel(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Borders reflected without repeating the edge pixel, as OpenCV's BORDER_REFLECT_101.
    padded = np.pad(grey, 1, mode="reflect")
    height, width = grey.shape

    def at(dy, dx):
        return padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]

    gx = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
    gy = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
    return gx, gy


def _non_maximum_suppression(magnitude, gx, gy) -> np.ndarray:
    """The magnitude where it is a local maximum across the edge (along the gradient,
    quantised to 0, 45, 90 or 135 degrees); zero elsewhere."""
    height, width = magnitude.shape
    padded = np.pad(magnitude, 1)

    def at(dy, dx):
        return padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]

    angle = np.rad2deg(np.arctan2(gy, gx)) % 180
    horizontal = (angle < 22.5) | (angle >= 157.5)  # gradient along x: compare left, right
    diagonal = (angle >= 22.5) & (angle < 67.5)  # y grows downwards: down-right, up-left
    vertical = (angle >= 67.5) & (angle < 112.5)
    anti_diagonal = (angle >= 112.5) & (angle < 157.5)
    neighbours = [
        (horizontal, (0, -1), (0, 1)),
        (diagonal, (-1, -1), (1, 1)),
        (vertical, (-1, 0), (1, 0)),
        (anti_diagonal, (-1, 1), (1, -1)),
    ]
    keep = np.zeros(magnitude.shape, dtype=bool)
    for direction, before, after in neighbours:
        # Strictly above one neighbour, at least the other: a plateau two pixels wide keeps
        # one pixel, as OpenCV's does.
        local_max = (magnitude > at(*before)) & (magnitude >= at(*after))
        keep |= direction & local_max
    return np.where(keep, magnitude, 0.0)


def _hysteresis(strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """Weak pixels 8-connected (through weak pixels) to a strong one, and the strong ones."""
    edges = strong.copy()
    while True:
        padded = np.pad(edges, 1)
        height, width = edges.shape
        grown = edges.copy()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                grown |= padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        grown &= weak
        grown |= strong
        if np.array_equal(grown, edges):
            return edges
        edges = grown


def control_image_from(
    image: Image.Image,
    width: int,
    height: int,
    *,
    module: str = CANNY,
    low_threshold: int = DEFAULT_LOW_THRESHOLD,
    high_threshold: int = DEFAULT_HIGH_THRESHOLD,
) -> Image.Image:
    """The conditioning image for a job of `width` x `height`: the source resized to the
    job's size, then its edges."""
    if module not in MODULES:
        raise ValueError(
            f"Unknown ControlNet preprocessor {module!r}; use one of {', '.join(MODULES)}."
        )
    source = image.convert("RGB")
    if source.size != (width, height):
        source = source.resize((width, height), Image.Resampling.LANCZOS)
    if module == NONE:
        return source
    return canny_edges(source, low_threshold, high_threshold)
