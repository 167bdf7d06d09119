"""Media files that are complete or absent, and never outlive a transaction that rolled back.

The default storage writes each file under a temporary name in its final folder, fsyncs it
and only then moves it into place, so a full disk or a killed process never leaves a
truncated file under a name a row may point to. Files written for rows that then roll
back are deleted (files_delete_on_rollback within uncommitted_files_removed);
`manage.py purge_orphan_files` removes what a killed process left behind.
"""

import contextvars
import errno
import logging
import os
import secrets
from contextlib import contextmanager, suppress

from django.core.files.move import file_move_safe
from django.core.files.storage import FileSystemStorage
from django.db import transaction
from django.utils._os import safe_makedirs

logger = logging.getLogger(__name__)

FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# Libraries that wrap the OSError (safetensors, torch) keep only its text.
FULL_TEXTS = tuple(os.strerror(number) for number in FULL_ERRNOS)
# Temporary files are hidden and named so that the orphan sweep can tell them apart.
TEMPORARY_PREFIX = ".partial-"
# Filesystems without hard links (some network shares): move into place with os.replace.
NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


class AtomicFileSystemStorage(FileSystemStorage):
    """FileSystemStorage whose files appear under their name only once complete and on
    disk: written to a temporary name beside it, fsynced, then linked into place. On any
    error the temporary file is removed and nothing exists under the final name."""

    def _save(self, name, content):
        full_path = self.path(name)
        directory = os.path.dirname(full_path)
        if self.directory_permissions_mode is not None:
            safe_makedirs(directory, self.directory_permissions_mode, exist_ok=True)
        else:
            os.makedirs(directory, exist_ok=True)
        temporary = self._write_temporary(directory, content)
        try:
            if self.file_permissions_mode is not None:
                os.chmod(temporary, self.file_permissions_mode)
            full_path = self._move_into_place(temporary, name)
            try:  # the new name survives a crash once its folder's entry is on disk too
                fsync_path(directory)
            except OSError:  # some filesystems can't fsync a folder
                pass
        finally:
            with suppress(FileNotFoundError):
                os.unlink(temporary)
        self._ensure_location_group_id(full_path)
        return os.path.relpath(full_path, self.location).replace("\\", "/")

    def _write_temporary(self, directory, content):
        """A complete, fsynced copy of `content` under a new temporary name in `directory`."""
        while True:
            temporary = os.path.join(directory, TEMPORARY_PREFIX + secrets.token_hex(8))
            try:
                # 0o666 and the process's umask, as FileSystemStorage creates files.
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
        try:
            if hasattr(content, "temporary_file_path"):
                # An upload Django already spooled to disk: renamed here when it can be.
                os.close(fd)
                file_move_safe(content.temporary_file_path(), temporary, allow_overwrite=True)
                fsync_path(temporary)
            else:
                with os.fdopen(fd, "wb") as handle:
                    for chunk in content.chunks():
                        handle.write(chunk.encode() if isinstance(chunk, str) else chunk)
                    handle.flush()
                    os.fsync(handle.fileno())
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        return temporary

    def _move_into_place(self, temporary, name):
        """Link the finished file to `name` (another free name should one appear meanwhile:
        never overwrite, as FileSystemStorage doesn't), or replace it when overwriting is
        allowed; its full path."""
        while True:
            full_path = self.path(name)
            if self._allow_overwrite:
                os.replace(temporary, full_path)
                return full_path
            try:
                os.link(temporary, full_path)
                return full_path
            except FileExistsError:
                name = self.get_available_name(name)
            except OSError as error:
                if error.errno not in NO_HARD_LINKS:
                    raise
                # Storage.save chose a free name; the race for it is lost only to a twin
                # name, and every name here is random.
                os.replace(temporary, full_path)
                return full_path


# Files written inside transactions, while uncommitted_files_removed runs: for each,
# whether its transaction committed.
_written = contextvars.ContextVar("studio_files_written_in_transactions", default=None)


@contextmanager
def uncommitted_files_removed():
    """Files given to files_delete_on_rollback while the block runs are deleted when it
    ends unless their transaction committed. Wrap work that opens its own transactions and
    runs outside any (a task's body), so that every transaction in it has ended by then."""
    written = {}
    token = _written.set(written)
    try:
        yield
    finally:
        _written.reset(token)
        for (storage, name), committed in written.items():
            if not committed:
                storage_delete_quietly(storage, name)


@contextmanager
def files_delete_on_rollback(storage):
    """Yields a list for the names of the files the block writes to `storage`: they are
    deleted if the block raises and, when it runs inside a transaction, unless that
    transaction commits (checked when uncommitted_files_removed ends; without one, what a
    later rollback leaves is for `purge_orphan_files`)."""
    names = []
    try:
        yield names
    except BaseException:
        for name in names:
            storage_delete_quietly(storage, name)
        raise
    written = _written.get()
    if written is None or not transaction.get_connection().in_atomic_block:
        return
    keys = [(storage, name) for name in names]
    written.update(dict.fromkeys(keys, False))
    transaction.on_commit(lambda: written.update(dict.fromkeys(keys, True)))


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def storage_delete_quietly(storage, name):
    try:
        storage.delete(name)
    except OSError:
        logger.warning("Could not delete %s, written for a transaction that rolled back", name)


def storage_is_full(error):
    """Whether `error`, or an error it was raised from, is a full disk or spent quota."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in FULL_ERRNOS:
            return True
        if any(text in str(error) for text in FULL_TEXTS):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False
