"""Image scanners: a class with `scan(picture) -> ScanResult`, chosen by the
STUDIO_IMAGE_SCANNER setting (a dotted path). Blank: NudeNet when the optional
`moderation` extra is installed, else NoClassifierScanner, which says so in every scan.

Scanners run on CPU workers (the `moderation` queue), never in a web request."""

import threading
from dataclasses import dataclass, field
from importlib import import_module, metadata

import numpy as np
from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class ScanResult:
    scanner: str  # what scanned it, with its version: shown to moderators
    scores: dict[str, float] = field(default_factory=dict)  # label -> 0..1
    # The labels whose scores the thresholds apply to; the others are recorded only.
    unsafe_labels: frozenset[str] = frozenset()

    def top(self):
        """(label, score) of the highest-scoring unsafe label, or ("", 0.0)."""
        ranked = [(score, label) for label, score in self.scores.items()
                  if label in self.unsafe_labels]
        if not ranked:
            return "", 0.0
        score, label = max(ranked)
        return label, score


class NoClassifierScanner:
    """No classifier is installed: nothing is classified, and the scan says exactly that
    (moderators and owners see "no classifier installed"). Images pass unless their hash
    matches removed content, or a user reports them."""

    name = "none"

    def scan(self, picture):
        return ScanResult(scanner=self.name)


class NudeNetScanner:
    """NudeNet's detector (the `nudenet` package, AGPL-3.0, with its ONNX model inside;
    runs offline on the CPU through onnxruntime). Scores are each label's highest
    detection confidence; exposed sexual body parts are the unsafe labels."""

    UNSAFE_LABELS = frozenset({
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    })
    _detector = None
    _lock = threading.Lock()

    def __init__(self):
        self.name = f"nudenet {metadata.version('nudenet')}"

    @classmethod
    def detector(cls):
        # Loading the model takes a moment: once per process, shared by its threads.
        with cls._lock:
            if cls._detector is None:
                cls._detector = import_module("nudenet").NudeDetector()
            return cls._detector

    def scan(self, picture):
        # NudeNet takes OpenCV's BGR pixel order.
        pixels = np.ascontiguousarray(np.asarray(picture.convert("RGB"))[:, :, ::-1])
        scores = {}
        for found in self.detector().detect(pixels):
            scores[found["class"]] = max(scores.get(found["class"], 0.0), float(found["score"]))
        return ScanResult(
            scanner=self.name,
            scores={label: round(score, 4) for label, score in scores.items()},
            unsafe_labels=self.UNSAFE_LABELS,
        )


def nudenet_installed():
    try:
        metadata.version("nudenet")
    except metadata.PackageNotFoundError:
        return False
    return True


def configured_scanner():
    """The scanner the settings choose (see the module's docstring)."""
    path = settings.STUDIO_IMAGE_SCANNER
    if path:
        return import_string(path)()
    return NudeNetScanner() if nudenet_installed() else NoClassifierScanner()
