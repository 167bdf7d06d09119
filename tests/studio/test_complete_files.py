"""Media files are complete or absent: a full disk leaves no truncated file, and files
written for rows that roll back are deleted (issue #18)."""

import errno
import os
from unittest import mock

import pytest
from django.core.files.base import ContentFile, File
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.db import transaction
from django.urls import reverse
from PIL import Image as PILImage

from gallery.models import Image
from generation.loras.models import Lora
from generation.models import DiffusionModel, GenerationJob, JobStatus
from generation.services import jobs_create
from generation.tasks import run_generation_job
from studio.accounts.models import Membership, Project, Role, Team, User
from studio.moderation.models import Policy
from studio.moderation.services import PromptBlocked
from studio.storage import (
    AtomicFileSystemStorage,
    files_delete_on_rollback,
    uncommitted_files_removed,
)
from tests.lora_builders import kohya_lora_bytes
from tests.small_disks import disk_fill, files_under, small_disk  # noqa: F401 (fixture)


class FullAfterFirstChunk(File):
    """Content whose second chunk meets a full disk, as a write to it would."""

    def __init__(self):
        super().__init__(None, name="x.png")

    def chunks(self, chunk_size=None):
        yield b"\x89PNG first part"
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_the_default_storage_writes_files_whole(settings, tmp_path):
    assert isinstance(storages["default"], AtomicFileSystemStorage)
    storage = AtomicFileSystemStorage(location=tmp_path)
    name = storage.save("images/1/a.png", ContentFile(b"png bytes"))
    assert name == "images/1/a.png"
    assert (tmp_path / name).read_bytes() == b"png bytes"
    assert (tmp_path / name).stat().st_mode & 0o777 == settings.FILE_UPLOAD_PERMISSIONS
    # A taken name is never overwritten, as FileSystemStorage never does.
    other = storage.save("images/1/a.png", ContentFile(b"other"))
    assert other != name and (tmp_path / name).read_bytes() == b"png bytes"
    # An upload Django spooled to disk is moved into place.
    upload = TemporaryUploadedFile("big.safetensors", "application/octet-stream", 5, None)
    upload.write(b"12345")
    upload.seek(0)
    moved = storage.save("loras/1/b.safetensors", upload)
    upload.close()
    assert (tmp_path / moved).read_bytes() == b"12345"
    assert files_under(tmp_path) == sorted([name, other, moved])


def test_a_write_that_fails_midway_leaves_nothing_under_its_name(tmp_path):
    storage = AtomicFileSystemStorage(location=tmp_path)
    with pytest.raises(OSError) as raised:
        storage.save("images/1/a.png", FullAfterFirstChunk())
    assert raised.value.errno == errno.ENOSPC
    assert files_under(tmp_path) == []  # neither the name nor a temporary file


def test_a_file_larger_than_the_free_space_leaves_nothing(small_disk):  # noqa: F811
    storage = AtomicFileSystemStorage(location=small_disk)
    disk_fill(small_disk, leave=64 * 1024)
    with pytest.raises(OSError) as raised:
        storage.save("images/1/a.png", ContentFile(bytes(256 * 1024)))
    assert raised.value.errno == errno.ENOSPC
    assert files_under(small_disk) == []


def test_a_file_of_a_failed_block_is_deleted_at_once(tmp_path):
    storage = AtomicFileSystemStorage(location=tmp_path)
    with pytest.raises(RuntimeError):
        with files_delete_on_rollback(storage) as written:
            written.append(storage.save("a.png", ContentFile(b"a")))
            raise RuntimeError("the row could not be saved")
    assert files_under(tmp_path) == []


@pytest.mark.django_db(transaction=True)
def test_files_stay_only_when_their_transaction_commits(tmp_path):
    storage = AtomicFileSystemStorage(location=tmp_path)

    def written_in_block(name):
        with files_delete_on_rollback(storage) as written:
            written.append(storage.save(name, ContentFile(name.encode())))

    with uncommitted_files_removed():
        with transaction.atomic():
            written_in_block("committed.png")
            try:
                with transaction.atomic():  # a savepoint rolled back inside a commit
                    written_in_block("savepoint-rolled-back.png")
                    raise RuntimeError
            except RuntimeError:
                pass
        try:
            with transaction.atomic():
                written_in_block("rolled-back-later.png")
                raise RuntimeError("a later step failed")
        except RuntimeError:
            pass
        # Before the block ends nothing is decided yet.
        assert len(files_under(tmp_path)) == 3
    assert files_under(tmp_path) == ["committed.png"]


@pytest.fixture
def make_job(tiny_model_dir):
    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir))
    return lambda: GenerationJob.objects.create(
        project=project, created_by=user, model=model, prompt="a red fox", steps=2,
        guidance_scale=6.5, width=64, height=48, seed=1234, batch_size=8,
    )


def run_job(job):
    with mock.patch("gallery.services.enqueue_thumbnails"), \
            mock.patch("studio.moderation.dispatch.enqueue_scan"):
        run_generation_job.apply(args=[job.pk])
    job.refresh_from_db()


@pytest.mark.django_db(transaction=True)
def test_a_job_that_fills_the_disk_fails_and_leaves_no_file(
    make_job, small_disk, settings, monkeypatch  # noqa: F811
):
    settings.MEDIA_ROOT = small_disk
    fitting = make_job()
    run_job(fitting)
    assert fitting.status == JobStatus.FINISHED
    kept = sorted(image.file.name for image in Image.objects.filter(job=fitting))
    assert len(kept) == 8 and files_under(small_disk) == kept  # committed: all kept

    disk_fill(small_disk, leave=40 * 1024)  # room for two or three of the next eight PNGs
    completed = []
    save = AtomicFileSystemStorage._save

    def save_noted(storage, name, content):
        completed.append(save(storage, name, content))
        return completed[-1]

    monkeypatch.setattr(AtomicFileSystemStorage, "_save", save_noted)
    overflowing = make_job()
    run_job(overflowing)

    assert completed, "the disk should have held the first images"
    assert overflowing.status == JobStatus.FAILED
    assert Image.objects.filter(job=overflowing).count() == 0
    # No complete, truncated or temporary file of the failed job is left.
    assert files_under(small_disk) == kept
    assert overflowing.error.startswith("The server's storage is full")
    assert "/" not in overflowing.error


@pytest.mark.django_db(transaction=True)
def test_an_upload_onto_a_full_disk_is_a_507_that_keeps_nothing(
    client, small_disk, settings  # noqa: F811
):
    settings.MEDIA_ROOT = small_disk
    editor = User.objects.create_user("ed", "ed@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=editor, role=Role.EDITOR)
    client.force_login(editor)
    disk_fill(small_disk, leave=0)

    upload = SimpleUploadedFile("watercolor.safetensors", kohya_lora_bytes("sd15"))
    response = client.post(
        reverse("lora_upload", args=[team.pk]), {"file": upload, "default_weight": "1"}
    )

    assert response.status_code == 507
    page = response.content.decode()
    assert "Storage full" in page and "nothing you sent was saved" in page
    assert str(small_disk) not in page
    assert not Lora.objects.exists()
    assert files_under(small_disk) == []


@pytest.mark.django_db
def test_uploads_of_jobs_that_a_check_refuses_are_not_kept(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.EDITOR)
    project = Project.objects.create(team=team, name="P")
    Policy.objects.create(team=team, blocked_terms="clown")
    source = PILImage.new("RGB", (64, 64), (200, 80, 40))

    with pytest.raises(PromptBlocked):  # as an API caller meets it, after the upload is stored
        jobs_create(
            user=user, project=project, params={"prompt": "a clown", "source_upload": source}
        )
    assert files_under(tmp_path) == []
