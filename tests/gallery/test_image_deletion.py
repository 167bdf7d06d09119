"""Deleting images: soft delete (one image or a job's), gone from every page, grid,
fragment, media URL and query at once; undo within the window; the purge removes the files
and the row, and lineage says "deleted" instead of breaking."""

from datetime import timedelta
from unittest import mock

from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from gallery import dispatch
from gallery.collections.models import Collection
from gallery.deletion import services as deletion
from gallery.models import Image, Visibility
from gallery.tasks import purge_deleted_images
from gallery.thumbnails import image_thumbnails_make
from generation.models import JobMode
from generation.prompt_history import prompt_entries
from tests.base import StudioTestCase, make_image, make_job

EDITORS = ("owner", "admin", "editor")
WINDOW = 3600


def deleted_image_ids():
    return set(Image.all_objects.filter(deleted_at__isnull=False).values_list("pk", flat=True))


@override_settings(STUDIO_DELETE_UNDO_SECONDS=WINDOW)
class DeletionTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.job = make_job(cls.project, cls.editor, cls.model, prompt="a red fox", batch_size=2)
        cls.image = make_image(cls.job)
        cls.sibling = make_image(cls.job)
        image_thumbnails_make(image_id=cls.image.pk)
        cls.image.refresh_from_db()
        cls.child = make_image(
            make_job(cls.project, cls.owner, cls.model, prompt="a fox, redrawn",
                     mode=JobMode.IMG2IMG, source_image=cls.image)
        )

    def setUp(self):
        # Deleting arms the embedded purge timer; tests check the call, not a real timer.
        patcher = mock.patch("gallery.deletion.services.schedule_purge")
        self.schedule_purge = patcher.start()
        self.addCleanup(patcher.stop)

    def delete(self, user=None, image=None):
        self.client.force_login(user or self.editor)
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(reverse("image_delete", args=[(image or self.image).pk]))

    def deletion_id(self, image=None):
        return Image.all_objects.get(pk=(image or self.image).pk).deletion_id

    def age_deletion(self, seconds):
        """Pretend the deletion happened `seconds` ago."""
        Image.all_objects.filter(deleted_at__isnull=False).update(
            deleted_at=timezone.now() - timedelta(seconds=seconds)
        )

    def restore(self, deletion_id, user=None):
        self.client.force_login(user or self.editor)
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(reverse("deletion_restore", args=[deletion_id]))


class DeleteAuthorisationTestCase(DeletionTestCase):
    def test_editors_delete_viewers_may_not_other_teams_get_404(self):
        for role, user in self.users_by_role().items():
            with self.subTest(role=role):
                response = self.delete(user)
                if role in EDITORS:
                    self.assertRedirects(
                        response, reverse("project_gallery", args=[self.project.pk]),
                        fetch_redirect_response=False,
                    )
                    self.assertEqual(deleted_image_ids(), {self.image.pk})
                    Image.all_objects.filter(pk=self.image.pk).update(
                        deleted_at=None, deletion_id=None
                    )
                else:
                    self.assertEqual(response.status_code, 403 if role == "viewer" else 404)
                    self.assertEqual(deleted_image_ids(), set())

    def test_anonymous_users_are_sent_to_log_in(self):
        self.delete()
        self.client.logout()
        for url in [
            reverse("image_delete", args=[self.sibling.pk]),
            reverse("job_images_delete", args=[self.job.pk]),
            reverse("deletion_restore", args=[self.deletion_id()]),
        ]:
            with self.subTest(url=url):
                response = self.client.post(url)
                self.assertEqual(response.status_code, 302)
                self.assertIn(reverse("login"), response["Location"])
        self.assertEqual(deleted_image_ids(), {self.image.pk})

    def test_deleting_is_a_post(self):
        self.client.force_login(self.editor)
        response = self.client.get(reverse("image_delete", args=[self.image.pk]))
        self.assertEqual(response.status_code, 405)
        self.assertEqual(deleted_image_ids(), set())

    def test_a_deleted_image_cannot_be_deleted_again(self):
        self.delete()
        self.assertEqual(self.delete().status_code, 404)

    def test_job_deletion_by_role(self):
        url = reverse("job_images_delete", args=[self.job.pk])
        for role, user in self.users_by_role().items():
            with self.subTest(role=role):
                self.client.force_login(user)
                with self.captureOnCommitCallbacks(execute=True):
                    response = self.client.post(url)
                if role in EDITORS:
                    self.assertEqual(response.status_code, 302)
                    self.assertEqual(deleted_image_ids(), {self.image.pk, self.sibling.pk})
                    Image.all_objects.update(deleted_at=None, deletion_id=None)
                else:
                    self.assertEqual(response.status_code, 403 if role == "viewer" else 404)
                    self.assertEqual(deleted_image_ids(), set())

    def test_restore_by_role(self):
        self.delete()
        deletion_id = self.deletion_id()
        for role in ("viewer", "outsider"):
            with self.subTest(role=role):
                response = self.restore(deletion_id, self.users_by_role()[role])
                self.assertEqual(response.status_code, 403 if role == "viewer" else 404)
                self.assertEqual(deleted_image_ids(), {self.image.pk})
        self.assertEqual(self.restore(deletion_id, self.admin).status_code, 302)
        self.assertEqual(deleted_image_ids(), set())

    def test_recently_deleted_page_and_its_thumbnails_by_role(self):
        self.delete()
        urls = [
            reverse("recently_deleted", args=[self.project.pk]),
            reverse("deleted_image_thumbnail", args=[self.image.pk, 256]),
        ]
        for role, user in self.users_by_role().items():
            self.client.force_login(user)
            for url in urls:
                with self.subTest(role=role, url=url):
                    expected = 200 if role in EDITORS else (403 if role == "viewer" else 404)
                    self.assertEqual(self.client.get(url).status_code, expected)
        self.client.logout()
        for url in urls:
            self.assertIn(reverse("login"), self.client.get(url)["Location"])


class GoneEverywhereTestCase(DeletionTestCase):
    def test_every_url_of_a_deleted_image_answers_404(self):
        Image.objects.filter(pk=self.image.pk).update(
            visibility=Visibility.UNLISTED, share_token="t" * 32
        )
        pk = self.image.pk
        urls = [
            reverse("image_detail", args=[pk]),
            reverse("image_card", args=[pk]),
            reverse("image_file", args=[pk]),
            reverse("image_thumbnail", args=[pk, 256]),
            reverse("image_download_clean", args=[pk]),
            reverse("image_remix", args=[pk]),
            reverse("image_shared", args=["t" * 32]),
            reverse("image_shared_file", args=["t" * 32]),
        ]
        self.client.force_login(self.owner)
        for url in urls:
            self.assertEqual(self.client.get(url).status_code, 200 if "remix" not in url else 302)
        self.delete()
        self.client.force_login(self.owner)
        for url in urls:
            with self.subTest(url=url):
                self.assertEqual(self.client.get(url).status_code, 404)

    def test_grids_pages_counts_and_lineage_leave_it_out(self):
        self.delete()
        self.client.force_login(self.owner)
        tag = f'data-image-id="{self.image.pk}"'
        for name, args in [
            ("project_gallery", [self.project.pk]),
            ("team_gallery", [self.team.pk]),
            ("my_images", []),
            ("project_studio", [self.project.pk]),
        ]:
            with self.subTest(page=name):
                response = self.client.get(reverse(name, args=args))
                self.assertEqual(response.status_code, 200)
                self.assertNotContains(response, tag)
        self.client.force_login(self.editor)
        self.assertNotContains(self.client.get(reverse("my_images")), tag)
        dashboard = self.client.get(reverse("dashboard"))
        project = next(p for t in dashboard.context["teams"] for p in t.projects.all())
        self.assertEqual(project.image_count, 2)  # the sibling and the child
        entries, _ = prompt_entries(user=self.editor, jobs=self.project.jobs.all())
        fox = next(entry for entry in entries if entry.prompt == "a red fox")
        self.assertEqual((fox.image_count, [i.pk for i in fox.images]), (1, [self.sibling.pk]))
        # The child's page no longer shows it as its source.
        response = self.client.get(reverse("image_detail", args=[self.child.pk]))
        self.assertContains(response, "A deleted image.")
        self.assertNotContains(response, f'data-image-id="{self.image.pk}"')

    def test_the_job_status_api_lists_only_live_images(self):
        self.delete()
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("job_detail", args=[self.job.pk]))
        self.assertEqual([image["id"] for image in response.json()["images"]], [self.sibling.pk])

    def test_remixing_a_job_whose_source_was_deleted_starts_without_it(self):
        self.client.force_login(self.editor)
        url = reverse("project_studio", args=[self.project.pk])
        params = {"duplicate": self.child.job_id, "image": self.child.pk}
        form = self.client.get(url, params).context["form"]
        self.assertEqual(form.initial["source_image"], self.image.pk)
        self.delete()
        self.client.force_login(self.editor)
        response = self.client.get(url, params)
        self.assertIsNone(response.context["form"].initial["source_image"])
        self.assertNotContains(response, reverse("image_thumbnail", args=[self.image.pk, 256]))

    def test_a_deleted_image_cannot_be_a_source(self):
        self.delete()
        self.client.force_login(self.editor)
        response = self.client.get(
            reverse("project_studio", args=[self.project.pk]), {"source": self.image.pk}
        )
        self.assertEqual(response.status_code, 404)

    def test_thumbnail_tasks_skip_deleted_images(self):
        self.delete(image=self.sibling)
        self.assertFalse(image_thumbnails_make(image_id=self.sibling.pk))


class UndoTestCase(DeletionTestCase):
    def test_the_message_after_a_delete_has_an_undo_button(self):
        response = self.delete()
        self.schedule_purge.assert_called_once()
        due = self.schedule_purge.call_args.args[0]
        self.assertAlmostEqual(
            (due - timezone.now()).total_seconds(), WINDOW, delta=5
        )
        page = self.client.get(response["Location"])
        restore = reverse("deletion_restore", args=[self.deletion_id()])
        self.assertContains(page, f'action="{restore}"')
        self.assertContains(page, f"Image {self.image.pk} deleted.")
        self.assertContains(page, "You can restore it for 1 hour.")

    def test_undo_brings_it_back_everywhere(self):
        self.delete()
        response = self.restore(self.deletion_id())
        self.assertRedirects(response, self.image.get_absolute_url(), fetch_redirect_response=False)
        image = Image.objects.get(pk=self.image.pk)
        self.assertEqual([image.deleted_at, image.deleted_by, image.deletion_id], [None] * 3)
        self.client.force_login(self.viewer)
        self.assertContains(
            self.client.get(reverse("project_gallery", args=[self.project.pk])),
            f'data-image-id="{self.image.pk}"',
        )

    def test_a_jobs_images_are_deleted_and_restored_together(self):
        self.client.force_login(self.editor)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(reverse("job_images_delete", args=[self.job.pk]))
        self.assertEqual(deleted_image_ids(), {self.image.pk, self.sibling.pk})
        self.assertEqual(self.deletion_id(), self.deletion_id(self.sibling))
        page = self.client.get(response["Location"])
        self.assertContains(page, f"2 images of job #{self.job.pk} deleted.")
        self.assertEqual(self.client.get(response["Location"]).context["total"], 1)
        response = self.restore(self.deletion_id())
        self.assertRedirects(
            response, reverse("project_gallery", args=[self.project.pk]),
            fetch_redirect_response=False,
        )
        self.assertEqual(deleted_image_ids(), set())

    def test_a_job_with_no_images_left_says_so(self):
        self.client.force_login(self.editor)
        empty = make_job(self.project, self.editor, self.model)
        response = self.client.post(reverse("job_images_delete", args=[empty.pk]), follow=True)
        self.assertContains(response, f"Job #{empty.pk} has no images left to delete.")
        self.schedule_purge.assert_not_called()

    def test_undo_after_the_window_is_refused(self):
        self.delete()
        deletion_id = self.deletion_id()
        self.age_deletion(WINDOW + 1)
        response = self.restore(deletion_id)
        self.assertEqual(response.status_code, 302)
        page = self.client.get(response["Location"])
        self.assertContains(page, "Too late to undo: deleted images can be restored for 1 hour")
        self.assertEqual(deleted_image_ids(), {self.image.pk})

    def test_undo_of_something_unknown_restored_or_purged_is_404(self):
        self.delete()
        deletion_id = self.deletion_id()
        self.restore(deletion_id)
        self.assertEqual(self.restore(deletion_id).status_code, 404)
        self.assertEqual(self.restore("0" * 8 + "-0000-4000-8000-" + "0" * 12).status_code, 404)

    def test_restoring_an_image_whose_thumbnails_were_skipped_makes_them(self):
        self.delete(image=self.sibling)
        with mock.patch("gallery.services.enqueue_thumbnails") as enqueue:
            self.restore(self.deletion_id(self.sibling))
        enqueue.assert_called_once_with(self.sibling.pk)

    def test_recently_deleted_lists_what_can_be_restored(self):
        self.delete()
        self.delete(image=self.child)
        self.age_deletion(60)
        old = make_image(make_job(self.project, self.editor, self.model, prompt="long gone"))
        self.delete(image=old)
        Image.all_objects.filter(pk=old.pk).update(
            deleted_at=timezone.now() - timedelta(seconds=WINDOW + 5)
        )
        response = self.client.get(reverse("recently_deleted", args=[self.project.pk]))
        groups = response.context["groups"]
        self.assertEqual([[i.pk for i in group["images"]] for group in groups],
                         [[self.child.pk], [self.image.pk]])
        self.assertContains(response, reverse("deletion_restore", args=[self.deletion_id()]))
        self.assertContains(
            response, reverse("deleted_image_thumbnail", args=[self.image.pk, 256])
        )
        self.assertNotContains(response, "long gone")
        self.assertEqual(
            self.client.get(reverse("deleted_image_thumbnail", args=[old.pk, 256])).status_code,
            404,
        )

    def test_the_project_gallery_links_recently_deleted_for_editors(self):
        link = reverse("recently_deleted", args=[self.project.pk])
        gallery = reverse("project_gallery", args=[self.project.pk])
        for user, shown in [(self.editor, True), (self.viewer, False)]:
            with self.subTest(user=user.username):
                self.client.force_login(user)
                response = self.client.get(gallery)
                (self.assertContains if shown else self.assertNotContains)(response, link)

    def test_a_deleted_images_thumbnail_is_served_never_its_original(self):
        self.delete(image=self.sibling)  # no thumbnails made
        self.delete()
        self.client.force_login(self.editor)
        url = reverse("deleted_image_thumbnail", args=[self.image.pk, 256])
        response = self.client.get(url)
        self.assertEqual(response["Content-Type"], "image/webp")
        for image, size in [(self.sibling, 256), (self.image, 300)]:
            with self.subTest(image=image.pk, size=size):
                url = reverse("deleted_image_thumbnail", args=[image.pk, size])
                self.assertEqual(self.client.get(url).status_code, 404)
        # A live image has no such URL.
        url = reverse("deleted_image_thumbnail", args=[self.child.pk, 256])
        self.assertEqual(self.client.get(url).status_code, 404)

    def test_the_image_page_offers_delete_to_editors_only(self):
        delete_url = reverse("image_delete", args=[self.image.pk])
        job_url = reverse("job_images_delete", args=[self.job.pk])
        self.client.force_login(self.editor)
        response = self.client.get(self.image.get_absolute_url())
        self.assertContains(response, delete_url)
        self.assertContains(response, job_url)
        self.assertContains(response, "Delete all 2 of its job")
        self.client.force_login(self.viewer)
        response = self.client.get(self.image.get_absolute_url())
        self.assertNotContains(response, delete_url)
        self.assertNotContains(response, job_url)


class PurgeTestCase(DeletionTestCase):
    def setUp(self):
        super().setUp()
        # Files outlive a test's transaction: each test purges images of its own.
        job = make_job(self.project, self.editor, self.model, prompt="a red fox", batch_size=2)
        self.job, self.image, self.sibling = job, make_image(job), make_image(job)
        image_thumbnails_make(image_id=self.image.pk)
        self.image.refresh_from_db()
        self.child = make_image(
            make_job(self.project, self.owner, self.model, mode=JobMode.IMG2IMG,
                     source_image=self.image)
        )

    def stored_names(self, image):
        names = deletion.image_files(image)
        self.assertEqual(len(names), 3)  # the original and both thumbnails
        return names

    def test_purge_removes_the_files_and_the_row_once_the_window_ended(self):
        names = self.stored_names(self.image)
        self.assertTrue(all(default_storage.exists(name) for name in names))
        self.delete()
        self.assertEqual(deletion.images_purge_due(), 0)  # still restorable
        self.assertTrue(all(default_storage.exists(name) for name in names))
        self.age_deletion(WINDOW + 1)
        self.assertEqual(deletion.images_purge_due(), 1)
        for name in names:
            self.assertFalse(default_storage.exists(name), name)
        self.assertFalse(Image.all_objects.filter(pk=self.image.pk).exists())
        # Nothing references the purged file: the child's job lost its source, and its
        # page says the source was deleted.
        self.child.job.refresh_from_db()
        self.assertIsNone(self.child.job.source_image_id)
        self.client.force_login(self.viewer)
        response = self.client.get(self.child.get_absolute_url())
        self.assertContains(response, "A deleted image.")
        self.assertFalse(
            Image.all_objects.filter(file=names[0]).exists()
            or Image.all_objects.filter(thumbnails__icontains=names[1]).exists()
        )

    def test_purge_is_idempotent_and_leaves_live_images_alone(self):
        self.delete()
        self.age_deletion(WINDOW + 1)
        self.assertEqual(deletion.images_purge_due(), 1)
        self.assertEqual(deletion.images_purge_due(), 0)
        self.assertTrue(default_storage.exists(self.sibling.file.name))
        live = set(Image.objects.values_list("pk", flat=True))
        self.assertTrue({self.sibling.pk, self.child.pk} <= live)
        self.assertNotIn(self.image.pk, live)

    def test_a_file_already_gone_does_not_stop_the_purge(self):
        default_storage.delete(self.image.file.name)
        self.delete()
        self.age_deletion(WINDOW + 1)
        self.assertEqual(deletion.images_purge_due(), 1)
        self.assertFalse(Image.all_objects.filter(pk=self.image.pk).exists())

    def test_a_storage_error_keeps_the_row_for_the_next_purge(self):
        self.delete()
        self.age_deletion(WINDOW + 1)
        with (
            mock.patch.object(default_storage, "delete", side_effect=OSError("read-only")),
            self.assertLogs("gallery.deletion.services", "ERROR"),
        ):
            self.assertEqual(deletion.images_purge_due(), 0)
        self.assertEqual(deleted_image_ids(), {self.image.pk})
        self.assertEqual(deletion.images_purge_due(), 1)

    def test_the_command_purges_what_is_due(self):
        self.delete()
        self.delete(image=self.sibling)
        Image.all_objects.filter(pk=self.image.pk).update(
            deleted_at=timezone.now() - timedelta(seconds=WINDOW + 1)
        )
        out = mock.MagicMock()
        call_command("purge_deleted_images", stdout=out)
        self.assertIn("Purged 1 image and 0 collections deleted more than 1 hour ago.",
                      str(out.write.call_args_list))
        self.assertEqual(deleted_image_ids(), {self.sibling.pk})

    def test_collections_deleted_before_the_window_go_too(self):
        long_ago = timezone.now() - timedelta(seconds=WINDOW + 1)
        old, recent, live = (
            Collection.objects.create(team=self.team, name=name, created_by=self.owner)
            for name in ("old", "recent", "live")
        )
        Collection.objects.filter(pk=old.pk).update(deleted_at=long_ago)
        Collection.objects.filter(pk=recent.pk).update(deleted_at=timezone.now())
        self.assertEqual(deletion.collections_purge_due(), 1)
        self.assertEqual(
            set(Collection.all_objects.values_list("name", flat=True)), {"recent", "live"}
        )
        self.assertEqual(deletion.collections_purge_due(), 0)

    def test_the_task_rearms_the_embedded_timer_for_the_next_window(self):
        self.delete()
        self.age_deletion(WINDOW + 1)
        self.delete(image=self.sibling)
        with mock.patch("gallery.dispatch.schedule_purge") as schedule:
            self.assertEqual(purge_deleted_images.run(), 1)
        due = schedule.call_args.args[0]
        deleted_at = Image.all_objects.get(pk=self.sibling.pk).deleted_at
        self.assertEqual(due, deleted_at + timedelta(seconds=WINDOW))


@override_settings(CELERY_BROKER_URL="")  # embedded mode, also where CI sets REDIS_URL
class EmbeddedTimerTestCase(DeletionTestCase):
    def tearDown(self):
        if dispatch._purge_timer is not None:
            dispatch._purge_timer.cancel()
            dispatch._purge_timer = None

    def test_one_timer_armed_for_the_earliest_window(self):
        later = timezone.now() + timedelta(hours=2)
        sooner = timezone.now() + timedelta(hours=1)
        dispatch.schedule_purge(later)
        dispatch.schedule_purge(sooner)
        self.assertEqual(dispatch._purge_timer.when, sooner)
        dispatch.schedule_purge(later)
        self.assertEqual(dispatch._purge_timer.when, sooner)

    def test_when_due_the_purge_runs_on_the_cpu_thread(self):
        with mock.patch("studio.embedded_worker.submit") as submit:
            dispatch.schedule_purge(timezone.now() - timedelta(seconds=1))
            dispatch._purge_timer.join(5)
        submit.assert_called_once_with("default", purge_deleted_images)

    @override_settings(CELERY_BROKER_URL="redis://broker")
    def test_with_a_broker_operators_schedule_the_command(self):
        dispatch.schedule_purge(timezone.now())
        self.assertIsNone(dispatch._purge_timer)


class DeletionQueryCountTestCase(DeletionTestCase):
    def test_recently_deleted_is_constant_in_the_number_of_images(self):
        counts = []
        for total in (10, 100):
            for _ in range(total - Image.all_objects.filter(deleted_at__isnull=False).count()):
                image = make_image(make_job(self.project, self.editor, self.model))
                deletion.image_delete(image=image, user=self.editor)
            self.client.force_login(self.editor)
            with CaptureQueriesContext(connection) as queries:
                response = self.client.get(reverse("recently_deleted", args=[self.project.pk]))
            self.assertEqual(
                sum(len(group["images"]) for group in response.context["groups"]), total
            )
            counts.append(len(queries))
        self.assertEqual(counts[0], counts[1])

    def test_the_image_page_is_constant_in_the_number_of_images_of_its_job(self):
        counts = []
        for total in (10, 100):
            for _ in range(total - self.job.images.count()):
                make_image(self.job)
            self.client.force_login(self.editor)
            with CaptureQueriesContext(connection) as queries:
                response = self.client.get(self.image.get_absolute_url())
            self.assertEqual(response.context["job_image_count"], total)
            counts.append(len(queries))
        self.assertEqual(counts[0], counts[1])
