"""Media files nothing points to, on the filesystem storage: temporary files a killed
process left mid-write (studio.storage) and files no row references (`manage.py
purge_orphan_files`). Only files older than ORPHAN_MIN_AGE are considered, so a file whose
row is being committed right now is never taken for an orphan."""

import os
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.apps import apps
from django.db import models

from gallery.models import Image
from studio.storage import TEMPORARY_PREFIX

ORPHAN_MIN_AGE = timedelta(hours=1)


@dataclass
class OrphanFiles:
    temporary: list = field(default_factory=list)  # storage names
    unreferenced: list = field(default_factory=list)  # (storage name, size in bytes)


def media_files_old(*, root, older_than):
    """(storage name, stat) of each file under `root` last written before `older_than`."""
    cutoff = time.time() - older_than.total_seconds()
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:  # removed meanwhile
                continue
            if stat.st_mtime < cutoff:
                yield os.path.relpath(path, root).replace(os.sep, "/"), stat


def referenced_names():
    """Every storage name a row holds: each model's file fields and images' thumbnails."""
    names = set()
    for model in apps.get_models():
        for model_field in model._meta.concrete_fields:
            if isinstance(model_field, models.FileField):
                names.update(
                    model._base_manager.exclude(**{model_field.name: ""})
                    .values_list(model_field.name, flat=True)
                    .iterator()
                )
    for thumbnails in Image._base_manager.values_list("thumbnails", flat=True).iterator():
        names.update((thumbnails or {}).values())
    return names


def orphan_files_find(*, root, older_than=ORPHAN_MIN_AGE):
    """The old files under `root` that are temporary or that no row references. Files are
    listed before rows are read, so a row committed meanwhile still counts."""
    found = OrphanFiles()
    candidates = []
    for name, stat in media_files_old(root=root, older_than=older_than):
        if os.path.basename(name).startswith(TEMPORARY_PREFIX):
            found.temporary.append(name)
        else:
            candidates.append((name, stat.st_size))
    referenced = referenced_names() if candidates else set()
    found.unreferenced = [(name, size) for name, size in candidates if name not in referenced]
    return found
