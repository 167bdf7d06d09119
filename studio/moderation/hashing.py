"""PDQ perceptual hashes (Meta's PDQ through the `pdqhash` package): 256 bits that stay
close under resizing, re-encoding and small edits, so re-uploads of removed content are
found by Hamming distance."""

import numpy as np
import pdqhash

# Below this quality (0-100) PDQ calls its own hash unreliable: flat or nearly featureless
# images all hash alike. Such hashes are stored, but never blocked nor matched.
MIN_QUALITY = 50


def pdq_hash(picture):
    """(64 hex digits, quality 0-100) of a PIL image."""
    bits, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(picture.convert("RGB"))))
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:064x}", int(quality)


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
