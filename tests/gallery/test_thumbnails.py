"""WebP thumbnails: made on the CPU queue after an image is saved, idempotent, served
through an authorised view, used by every grid, backfilled by a command."""

import io
from types import SimpleNamespace
from unittest import mock

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import TransactionTestCase, override_settings
from django.urls import reverse
from PIL import Image as PILImage

from gallery.dispatch import enqueue_thumbnails
from gallery.models import THUMBNAIL_SIZES, Image
from gallery.services import image_create_from_generation
from gallery.tasks import make_thumbnails
from gallery.thumbnails import image_thumbnails_make
from tests.base import StudioTestCase, make_image, make_job


def png_bytes(size, colour=(30, 120, 200)):
    buffer = io.BytesIO()
    PILImage.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def wide_image(project, user, model, size=(640, 384)):
    job = make_job(project, user, model, width=size[0], height=size[1])
    image = make_image(job)
    image.file.save("x.png", ContentFile(png_bytes(size)), save=True)
    return image


def body(response):
    return b"".join(response.streaming_content)


class ThumbnailTaskTestCase(StudioTestCase):
    def test_makes_webp_thumbnails_by_long_side(self):
        image = wide_image(self.project, self.editor, self.model)
        make_thumbnails.run(image.pk)
        image.refresh_from_db()
        self.assertEqual(sorted(image.thumbnails), ["256", "512"])
        for size, expected in ((256, (256, 154)), (512, (512, 307))):
            with default_storage.open(image.thumbnail_name(size)) as handle:
                thumb = PILImage.open(handle)
                self.assertEqual(thumb.format, "WEBP")
                self.assertEqual(thumb.size, expected)

    def test_small_images_are_never_enlarged(self):
        image = make_image(make_job(self.project, self.editor, self.model))  # 64x64
        image_thumbnails_make(image_id=image.pk)
        image.refresh_from_db()
        with default_storage.open(image.thumbnail_name(512)) as handle:
            self.assertEqual(PILImage.open(handle).size, (64, 64))

    def test_names_are_server_chosen(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        image_thumbnails_make(image_id=image.pk)
        image.refresh_from_db()
        for size in THUMBNAIL_SIZES:
            self.assertRegex(
                image.thumbnail_name(size),
                rf"^thumbnails/{self.project.pk}/[0-9a-f]{{32}}-{size}\.webp$",
            )

    def test_running_again_changes_nothing(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        self.assertTrue(image_thumbnails_make(image_id=image.pk))
        image.refresh_from_db()
        first = dict(image.thumbnails)
        with mock.patch("gallery.thumbnails.default_storage.save") as save:
            self.assertFalse(image_thumbnails_make(image_id=image.pk))
            make_thumbnails.run(image.pk)
        save.assert_not_called()
        image.refresh_from_db()
        self.assertEqual(image.thumbnails, first)

    def test_a_deleted_image_is_skipped(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        image_id = image.pk
        image.delete()
        self.assertFalse(image_thumbnails_make(image_id=image_id))

    def test_a_lost_race_keeps_the_recorded_thumbnails(self):
        from gallery import thumbnails

        image = make_image(make_job(self.project, self.editor, self.model))
        real_open, real_save, saved, reads = (
            thumbnails.open_original, default_storage.save, [], [],
        )

        def another_run_finishes_first(img):
            reads.append(img.pk)
            if len(reads) == 1:  # while the first run renders, another one wins
                image_thumbnails_make(image_id=img.pk)
            return real_open(img)

        def save(name, content):
            saved.append(real_save(name, content))
            return saved[-1]

        with (
            mock.patch.object(thumbnails, "open_original", another_run_finishes_first),
            mock.patch.object(thumbnails.default_storage, "save", save),
            self.captureOnCommitCallbacks(execute=True),
        ):
            self.assertFalse(image_thumbnails_make(image_id=image.pk))
        image.refresh_from_db()
        recorded = set(image.thumbnails.values())
        self.assertEqual(len(recorded), len(THUMBNAIL_SIZES))
        self.assertEqual(len(saved), 2 * len(THUMBNAIL_SIZES))
        for name in saved:
            # The winner's files are kept; the loser's are removed, not left behind.
            self.assertEqual(default_storage.exists(name), name in recorded)

    def test_an_unreadable_original_makes_no_thumbnails(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        image.file.save("x.png", ContentFile(b"not a png"), save=True)
        with self.assertLogs("gallery.thumbnails", "ERROR"):
            self.assertFalse(image_thumbnails_make(image_id=image.pk))
        image.refresh_from_db()
        self.assertEqual(image.thumbnails, {})


class ThumbnailDispatchTestCase(StudioTestCase):
    def test_saving_a_generated_image_enqueues_its_thumbnails_on_commit(self):
        job = make_job(self.project, self.editor, self.model)
        result = SimpleNamespace(
            seed=42, sampler="Euler", schedule_type=None, scheduler_class="EulerDiscrete",
            scheduler_config={}, variation_seed=None,
        )
        with mock.patch("gallery.services.enqueue_thumbnails") as enqueue:
            with self.captureOnCommitCallbacks(execute=False) as callbacks:
                image = image_create_from_generation(
                    job=job, pil_image=PILImage.new("RGB", (64, 64)), result=result
                )
            enqueue.assert_not_called()  # not before the row is committed
            for callback in callbacks:
                callback()
        enqueue.assert_called_once_with(image.pk)

    @override_settings(CELERY_BROKER_URL=None)
    def test_embedded_mode_runs_in_process(self):
        with mock.patch("studio.embedded_worker.submit") as submit:
            enqueue_thumbnails(7)
        submit.assert_called_once_with("default", make_thumbnails, 7)

    @override_settings(CELERY_BROKER_URL="redis://broker:6379/0")
    def test_with_a_broker_it_goes_to_the_cpu_queue(self):
        with mock.patch.object(make_thumbnails, "apply_async") as apply_async:
            enqueue_thumbnails(7)
        apply_async.assert_called_once_with(args=[7], queue="default")

    def test_the_task_is_routed_to_the_cpu_queue(self):
        from django.conf import settings

        route = settings.CELERY_TASK_ROUTES["gallery.tasks.make_thumbnails"]
        self.assertEqual(route, {"queue": "default"})


class ThumbnailViewTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.image = make_image(make_job(cls.project, cls.editor, cls.model))

    def url(self, size=256):
        return reverse("image_thumbnail", args=[self.image.pk, size])

    def test_members_get_the_webp_with_private_caching(self):
        image_thumbnails_make(image_id=self.image.pk)
        for role, user in self.users_by_role().items():
            if role == "outsider":
                continue
            self.client.force_login(user)
            response = self.client.get(self.url(512))
            with self.subTest(role=role):
                self.assertEqual(response.status_code, 200)
                self.assertEqual(response["Content-Type"], "image/webp")
                self.assertIn("private", response["Cache-Control"])
                self.assertEqual(PILImage.open(io.BytesIO(body(response))).format, "WEBP")

    def test_falls_back_to_the_original_until_made(self):
        self.client.force_login(self.viewer)
        response = self.client.get(self.url())
        self.assertRedirects(
            response, reverse("image_file", args=[self.image.pk]), fetch_redirect_response=False
        )
        self.assertIn("no-cache", response["Cache-Control"])

    def test_unknown_size_is_404(self):
        image_thumbnails_make(image_id=self.image.pk)
        self.client.force_login(self.viewer)
        self.assertEqual(self.client.get(self.url(300)).status_code, 404)

    def test_outsider_gets_404_and_anonymous_logs_in(self):
        image_thumbnails_make(image_id=self.image.pk)
        self.client.force_login(self.outsider)
        self.assertEqual(self.client.get(self.url()).status_code, 404)
        self.client.logout()
        response = self.client.get(self.url())
        self.assertEqual(response.status_code, 302)
        self.assertTrue(response["Location"].startswith(reverse("login")))


class GridsUseThumbnailsTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.image = make_image(make_job(cls.project, cls.editor, cls.model))
        image_thumbnails_make(image_id=cls.image.pk)

    def thumb_src(self):
        return f'src="{reverse("image_thumbnail", args=[self.image.pk, 256])}"'

    def test_studio_gallery_grid(self):
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        grid = response.content.decode().split('id="gallery-grid"', 1)[1].split("</div>", 1)[0]
        self.assertIn(self.thumb_src(), grid)
        self.assertIn(reverse("image_thumbnail", args=[self.image.pk, 512]) + " 512w", grid)
        self.assertNotIn(f'src="{self.image.file_url()}"', grid)

    def test_new_image_card(self):
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("image_card", args=[self.image.pk]))
        self.assertContains(response, self.thumb_src())

    def test_card_shows_the_original_until_thumbnails_exist(self):
        Image.objects.filter(pk=self.image.pk).update(thumbnails={})
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("image_card", args=[self.image.pk]))
        self.assertContains(response, f'src="{self.image.file_url()}"')
        self.assertNotContains(response, "srcset")

    def test_prompt_history(self):
        self.client.force_login(self.editor)
        response = self.client.get(reverse("prompt_history"))
        self.assertContains(response, self.thumb_src())
        self.assertNotContains(response, f'src="{self.image.file_url()}"')

    def test_team_and_dashboard_covers(self):
        self.client.force_login(self.viewer)
        for url in (reverse("dashboard"), reverse("team_detail", args=[self.team.pk])):
            with self.subTest(url=url):
                response = self.client.get(url)
                self.assertContains(response, self.thumb_src())
                self.assertNotContains(response, f'src="{self.image.file_url()}"')


class BackfillCommandTestCase(StudioTestCase):
    def test_makes_missing_thumbnails_and_skips_finished_images(self):
        done = make_image(make_job(self.project, self.editor, self.model))
        image_thumbnails_make(image_id=done.pk)
        done.refresh_from_db()
        before = dict(done.thumbnails)
        todo = [make_image(make_job(self.project, self.editor, self.model)) for _ in range(2)]
        out = io.StringIO()
        call_command("backfill_thumbnails", stdout=out)
        self.assertIn("Made thumbnails for 2 of 2", out.getvalue())
        for image in todo:
            image.refresh_from_db()
            self.assertTrue(image.has_thumbnails())
        done.refresh_from_db()
        self.assertEqual(done.thumbnails, before)

    def test_enqueue_sends_tasks(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        out = io.StringIO()
        with mock.patch(
            "gallery.management.commands.backfill_thumbnails.enqueue_thumbnails"
        ) as enqueue:
            call_command("backfill_thumbnails", "--enqueue", stdout=out)
        enqueue.assert_called_once_with(image.pk)
        self.assertIn("Queued 1 of 1", out.getvalue())

    def test_force_remakes_every_thumbnail(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        image_thumbnails_make(image_id=image.pk)
        image.refresh_from_db()
        old = dict(image.thumbnails)
        with self.captureOnCommitCallbacks(execute=True):
            call_command("backfill_thumbnails", "--force", stdout=io.StringIO())
        image.refresh_from_db()
        self.assertTrue(set(image.thumbnails.values()).isdisjoint(old.values()))
        for name in old.values():
            self.assertFalse(default_storage.exists(name))


class EmbeddedWorkerTestCase(TransactionTestCase):
    """The embedded mode: the task runs in the web process's CPU thread, on its own
    database connection, once the image is committed."""

    def test_the_cpu_thread_makes_them(self):
        from generation.models import DiffusionModel
        from studio import embedded_worker
        from studio.accounts.models import Project, Team, User

        user = User.objects.create_user("ann", "ann@example.org", "pw")
        project = Project.objects.create(team=Team.objects.create(name="T"), name="P")
        model = DiffusionModel.objects.create(name="m", source="/m")
        image = make_image(make_job(project, user, model))
        future = embedded_worker.submit("default", make_thumbnails, image.pk)
        future.result(timeout=60)
        image.refresh_from_db()
        self.assertTrue(image.has_thumbnails())
