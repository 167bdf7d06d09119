"""PDQ perceptual hashes (Meta's PDQ through the `pdqhash` package): 256 bits that stay
close under resizing, re-encoding and small edits, so re-uploads of removed content are
found by Hamming distance."""

import numpy as np
import pdqhash
from PIL import Image

# Below this quality (0-100) PDQ calls its own hash unreliable: flat or nearly featureless
# images all hash alike. Such hashes are stored, but never blocked nor matched.
MIN_QUALITY = 50


# PDQ reduces any picture to 64x64 after a blur sized to it; its reference implementation
# first downsamples to 512 pixels, which keeps the hash and makes a 16-megapixel upload
# hash in milliseconds instead of seconds.
PDQ_SIDE = 512


def pdq_hash(picture):
    """(64 hex digits, quality 0-100) of a PIL image."""
    picture = picture_fitted(picture, PDQ_SIDE)
    bits, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(picture.convert("RGB"))))
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:064x}", int(quality)


def picture_fitted(picture, side):
    """`picture`, scaled down (box filter, no full-size copy) to at most `side` pixels on
    its longer side; unchanged if it is that small already."""
    scale = side / max(picture.size)
    if scale >= 1:
        return picture
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.BOX)


def distance(a, b):
    """Hamming distance of two hex PDQ hashes (0-256)."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def nearest(hex_hash, candidates):
    """(candidate, distance) of the closest of `candidates` (objects with .pdq_hash), or
    (None, None). A linear scan: fine for thousands of blocked hashes; beyond that, index
    them (multi-index hashing on 16-bit chunks) before it matters."""
    value = int(hex_hash, 16)
    best, best_distance = None, None
    for candidate in candidates:
        bits = (value ^ int(candidate.pdq_hash, 16)).bit_count()
        if best_distance is None or bits < best_distance:
            best, best_distance = candidate, bits
    return best, best_distance
