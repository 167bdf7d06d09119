"""A1111's "Model hash" for library models: the SHA-256 of a single-file checkpoint.

Hashing gigabytes takes a while, so it runs on the CPU queue once the model's row is
committed (at registration, when its source changes, and for models registered before
this, when an image made with one is written); images written before it is known leave
the hash out, as A1111 does without one.
"""

import hashlib
from functools import partial

from django.conf import settings
from django.db import transaction

from generation.models import DiffusionModel, SourceKind
from studio.dispatch import send

HASH_BLOCK_BYTES = 1024 * 1024


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as opened:
        for block in iter(lambda: opened.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def model_hash_schedule(*, model):
    """Hash a single-file model's source on the CPU queue once committed; nothing for
    folders and Hub ids, or when its hash is known."""
    if model.source_kind != SourceKind.FILE or model.sha256:
        return
    from generation.tasks import hash_model

    transaction.on_commit(
        partial(send, hash_model, model.pk, model.source, queue=settings.STUDIO_CPU_QUEUE),
        robust=True,
    )


# Models (id, source) this process has asked a hash for while writing images: a batch of
# images asks once, not once per image.
_backfills_sent = set()


def model_hash_backfill(*, model):
    """For a model registered before hashes were kept: its hash, asked for once per process
    while images are written."""
    key = (model.pk, model.source)
    if model.source_kind != SourceKind.FILE or model.sha256 or key in _backfills_sent:
        return
    _backfills_sent.add(key)
    model_hash_schedule(model=model)


def model_hash_compute(*, model_id, source):
    """Store the SHA-256 of `source` for the model, unless it has one or its source has
    changed since (that change scheduled its own). Running it again changes nothing."""
    pending = DiffusionModel.objects.filter(
        pk=model_id, source=source, source_kind=SourceKind.FILE, sha256=""
    )
    if not pending.exists():
        return None
    sha256 = file_sha256(source)
    pending.update(sha256=sha256)
    return sha256
