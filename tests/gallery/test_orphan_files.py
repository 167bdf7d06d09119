"""`manage.py purge_orphan_files`: temporary files a killed process left are removed; files
no row references are listed, and deleted with --delete; recent files are left alone."""

import io
import os
import time

import pytest
from django.core.management import CommandError, call_command

from generation.models import DiffusionModel
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import make_image, make_job
from tests.small_disks import files_under

pytestmark = pytest.mark.django_db

TWO_HOURS_AGO = time.time() - 2 * 3600


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def write(media, name, *, old=True):
    path = media / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 10)
    if old:
        os.utime(path, (TWO_HOURS_AGO, TWO_HOURS_AGO))
    return name


@pytest.fixture
def image(media):
    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(name="m", source="/models/m")
    upload = write(media, "uploads/1/s.png")
    image = make_image(make_job(project, user, model, source_upload=upload))
    image.thumbnails = {"256": write(media, "thumbnails/1/t-256.webp")}
    image.save(update_fields=["thumbnails"])
    os.utime(media / image.file.name, (TWO_HOURS_AGO, TWO_HOURS_AGO))
    return image


def purge(*args):
    out = io.StringIO()
    call_command("purge_orphan_files", *args, stdout=out)
    return out.getvalue()


def test_old_temporary_files_go_and_unreferenced_ones_are_listed(media, image):
    write(media, "images/1/.partial-0123456789abcdef")
    recent_temporary = write(media, "images/1/.partial-fedcba9876543210", old=False)
    lost = write(media, "images/1/lost.png")
    recent = write(media, "images/1/being-committed.png", old=False)
    kept = sorted([image.file.name, "thumbnails/1/t-256.webp", "uploads/1/s.png"])

    output = purge()

    assert "Removed 1 temporary file(s) left mid-write." in output
    assert "images/1/lost.png\t10\xa0bytes" in output
    assert "1 file(s) no row references (10\xa0bytes); run with --delete" in output
    assert files_under(media) == sorted([*kept, lost, recent, recent_temporary])

    output = purge("--delete")
    assert "Deleted 1 file(s) no row references" in output
    assert files_under(media) == sorted([*kept, recent, recent_temporary])
    assert "No file is left without its row." in purge()


def test_other_storages_are_refused(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    with pytest.raises(CommandError, match="works on the filesystem storage"):
        purge()
