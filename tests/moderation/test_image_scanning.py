"""Image scans on the `moderation` queue: per-label scores stored, thresholds per site and
per team decide pass / flag / block, the image's moderation status follows, a flag opens
a case, the project hears `image.moderated`; NudeNet when installed, else a scanner that
says no classifier is installed."""

from contextlib import ExitStack
from io import StringIO
from types import SimpleNamespace
from unittest import mock, skipUnless

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.test import TransactionTestCase, override_settings
from PIL import Image as PILImage

from gallery.models import Image, ModerationStatus
from gallery.services import image_create_from_generation
from studio.moderation.dispatch import enqueue_scan
from studio.moderation.models import Case, CaseKind, ImageScan, Policy, ScanDecision
from studio.moderation.scanners import NoClassifierScanner, NudeNetScanner, nudenet_installed
from studio.moderation.scanning import image_scan
from studio.moderation.tasks import scan_image
from tests.base import StudioTestCase, make_job
from tests.moderation_helpers import make_textured_image, scanning_with, textured_picture


class ScanTestCase(StudioTestCase):
    def scan(self, score, image=None):
        image = image or make_textured_image(self.project, self.editor, self.model)
        with ExitStack() as stack:
            for context in scanning_with(score):
                stack.enter_context(context)
            publish = stack.enter_context(mock.patch("studio.moderation.scanning.publish"))
            with self.captureOnCommitCallbacks(execute=True):
                scan = image_scan(image_id=image.pk)
        image.refresh_from_db()
        return image, scan, publish


class DecisionTests(ScanTestCase):
    def test_a_low_score_passes_and_stores_every_label_and_the_hash(self):
        image, scan, publish = self.scan(0.1)
        self.assertEqual(scan.decision, ScanDecision.PASS)
        self.assertEqual(image.moderation_status, ModerationStatus.PASSED)
        self.assertEqual(scan.scores, {"unsafe": 0.1, "harmless": 0.99})
        self.assertEqual((scan.top_label, scan.top_score), ("unsafe", 0.1))
        self.assertRegex(scan.pdq_hash, r"^[0-9a-f]{64}$")
        self.assertGreaterEqual(scan.pdq_quality, 50)
        self.assertFalse(Case.objects.exists())
        group, payload = publish.call_args.args
        self.assertEqual(group, self.project.events_group())
        self.assertEqual(payload["type"], "image.moderated")
        self.assertEqual(payload["image"]["id"], image.pk)
        self.assertEqual(payload["moderation_status"], "passed")

    def test_a_score_past_the_flag_threshold_hides_it_and_opens_a_case(self):
        image, scan, publish = self.scan(0.6)
        self.assertEqual(scan.decision, ScanDecision.FLAG)
        self.assertEqual(image.moderation_status, ModerationStatus.FAILED)
        case = Case.objects.get()
        self.assertEqual(
            (case.kind, case.subject_image_id, case.subject_user, case.team),
            (CaseKind.SCAN_FLAG, image.pk, self.editor, self.team),
        )
        self.assertIn("unsafe 0.60", case.summary)
        self.assertEqual(publish.call_args.args[1]["decision"], "flag")

    def test_a_score_past_the_block_threshold_blocks_it(self):
        image, scan, _ = self.scan(0.95)
        self.assertEqual(scan.decision, ScanDecision.BLOCK)
        self.assertEqual(image.moderation_status, ModerationStatus.FAILED)

    def test_labels_that_are_not_unsafe_never_decide(self):
        # "harmless" scores 0.99 in every scan above; only "unsafe" counts.
        _, scan, _ = self.scan(0.0)
        self.assertEqual(scan.decision, ScanDecision.PASS)

    def test_the_site_policy_sets_the_thresholds(self):
        Policy.objects.create(scan_flag_at=0.2, scan_block_at=0.4)
        self.assertEqual(self.scan(0.3)[1].decision, ScanDecision.FLAG)
        self.assertEqual(self.scan(0.5)[1].decision, ScanDecision.BLOCK)

    def test_a_team_policy_may_be_stricter_but_never_looser(self):
        Policy.objects.create(team=self.team, scan_flag_at=0.3)
        self.assertEqual(self.scan(0.35)[1].decision, ScanDecision.FLAG)
        Policy.objects.filter(team=self.team).update(scan_flag_at=0.9, scan_block_at=0.99)
        self.assertEqual(self.scan(0.6)[1].decision, ScanDecision.FLAG)
        self.assertEqual(self.scan(0.9)[1].decision, ScanDecision.BLOCK)
        # Another team's stricter policy changes nothing here.
        Policy.objects.create(team=self.other_team, scan_flag_at=0.1)
        self.assertEqual(self.scan(0.2)[1].decision, ScanDecision.PASS)

    def test_scanning_twice_changes_nothing(self):
        image, scan, _ = self.scan(0.1)
        again = self.scan(0.99, image=image)[1]
        self.assertIsNone(again)
        self.assertEqual(ImageScan.objects.get().decision, ScanDecision.PASS)
        self.assertEqual(image.moderation_status, ModerationStatus.PASSED)

    def test_an_unreadable_file_is_logged_and_left_pending(self):
        image = make_textured_image(self.project, self.editor, self.model)
        image.file.save("x.png", ContentFile(b"not a png"), save=True)
        with self.assertLogs("studio.moderation.scanning", "ERROR"):
            self.assertIsNone(image_scan(image_id=image.pk))
        image.refresh_from_db()
        self.assertEqual(image.moderation_status, ModerationStatus.PENDING)

    def test_a_deleted_image_is_skipped(self):
        self.assertIsNone(image_scan(image_id=987654))


class PolicyThresholdFormTests(StudioTestCase):
    def test_thresholds_out_of_range_or_crossed_are_refused_by_field(self):
        from studio.moderation.forms import PolicyForm

        for values, field, message in [
            ({"scan_flag_at": 1.5}, "scan_flag_at", "between 0 and 1"),
            ({"scan_block_at": 0}, "scan_block_at", "between 0 and 1"),
            ({"scan_flag_at": 0.8, "scan_block_at": 0.5}, "scan_flag_at", "no higher"),
        ]:
            with self.subTest(values=values):
                form = PolicyForm(values, instance=Policy())
                self.assertFalse(form.is_valid())
                self.assertIn(message, " ".join(form.errors[field]))


class ScannerChoiceTests(StudioTestCase):
    @override_settings(STUDIO_IMAGE_SCANNER="")
    def test_without_nudenet_the_scan_says_no_classifier_is_installed(self):
        image = make_textured_image(self.project, self.editor, self.model)
        with mock.patch("studio.moderation.scanners.nudenet_installed", return_value=False):
            with mock.patch("studio.moderation.scanning.publish"):
                scan = image_scan(image_id=image.pk)
        self.assertEqual(scan.scanner, NoClassifierScanner.name)
        self.assertEqual(scan.scores, {})
        self.assertEqual(scan.decision, ScanDecision.PASS)
        self.assertEqual(scan.summary(), "no classifier installed: only the hash was checked")

    @skipUnless(nudenet_installed(), "the `moderation` extra (nudenet) is not installed")
    @override_settings(STUDIO_IMAGE_SCANNER="")
    def test_nudenet_is_the_default_when_installed_and_runs_offline(self):
        image = make_textured_image(self.project, self.editor, self.model)
        with mock.patch("studio.moderation.scanning.publish"):
            scan = image_scan(image_id=image.pk)
        self.assertTrue(scan.scanner.startswith("nudenet "))
        # Coloured blocks show no body parts.
        self.assertEqual(scan.decision, ScanDecision.PASS)
        result = NudeNetScanner().scan(textured_picture(3))
        self.assertTrue(all(0 <= score <= 1 for score in result.scores.values()))
        self.assertIn("FEMALE_GENITALIA_EXPOSED", result.unsafe_labels)


class ScanDispatchTests(StudioTestCase):
    def test_saving_a_generated_image_schedules_its_scan_on_commit(self):
        job = make_job(self.project, self.editor, self.model)
        result = SimpleNamespace(
            seed=42, sampler="Euler", schedule_type=None, scheduler_class="EulerDiscrete",
            scheduler_config={}, variation_seed=None,
        )
        with mock.patch("studio.moderation.dispatch.enqueue_scan") as enqueue:
            with mock.patch("gallery.services.enqueue_thumbnails"):
                with self.captureOnCommitCallbacks(execute=False) as callbacks:
                    image = image_create_from_generation(
                        job=job, pil_image=PILImage.new("RGB", (64, 64)), result=result
                    )
                enqueue.assert_not_called()
                for callback in callbacks:
                    callback()
        enqueue.assert_called_once_with(image.pk)
        self.assertEqual(Image.objects.get().moderation_status, ModerationStatus.PENDING)

    @override_settings(CELERY_BROKER_URL=None)
    def test_embedded_mode_scans_on_the_cpu_thread(self):
        with mock.patch("studio.embedded_worker.submit") as submit:
            enqueue_scan(7)
        submit.assert_called_once_with("moderation", scan_image, 7)

    @override_settings(CELERY_BROKER_URL="redis://broker:6379/0")
    def test_with_a_broker_it_goes_to_the_moderation_queue(self):
        with mock.patch.object(scan_image, "apply_async") as apply_async:
            enqueue_scan(7)
        apply_async.assert_called_once_with(args=[7], queue="moderation")

    def test_the_task_is_routed_to_the_moderation_queue(self):
        route = settings.CELERY_TASK_ROUTES["studio.moderation.tasks.scan_image"]
        self.assertEqual(route, {"queue": settings.STUDIO_MODERATION_QUEUE})
        self.assertEqual(settings.STUDIO_MODERATION_QUEUE, "moderation")


class ScanCommandTests(ScanTestCase):
    def test_it_scans_only_the_images_without_a_scan(self):
        scanned, _, _ = self.scan(0.1)
        waiting = make_textured_image(self.project, self.editor, self.model, seed=4)
        out = StringIO()
        settings_, scores = scanning_with(0.7)
        with settings_, scores, mock.patch("studio.moderation.scanning.publish"):
            call_command("scan_images", stdout=out)
        self.assertIn("Scanned 1 of 1 unscanned images.", out.getvalue())
        waiting.refresh_from_db()
        self.assertEqual(waiting.scan.decision, ScanDecision.FLAG)
        self.assertEqual(ImageScan.objects.get(image=scanned).decision, ScanDecision.PASS)

    def test_enqueue_sends_them_to_the_moderation_queue(self):
        image = make_textured_image(self.project, self.editor, self.model)
        with mock.patch("studio.moderation.management.commands.scan_images.enqueue_scan") as send:
            call_command("scan_images", "--enqueue", stdout=StringIO())
        send.assert_called_once_with(image.pk)


@override_settings(STUDIO_IMAGE_SCANNER="")
class EmbeddedScanTests(TransactionTestCase):
    """The embedded mode's CPU thread scans a committed image on its own connection, with
    this environment's default scanner (NudeNet or the no-classifier one)."""

    def test_the_cpu_thread_scans_it_and_the_project_hears_of_it(self):
        from generation.models import DiffusionModel
        from studio import embedded_worker
        from studio.accounts.models import Project, Team, User

        user = User.objects.create_user("ann", "ann@example.org", "pw")
        project = Project.objects.create(team=Team.objects.create(name="T"), name="P")
        model = DiffusionModel.objects.create(name="m", source="/m")
        image = make_textured_image(project, user, model)
        with mock.patch("studio.moderation.scanning.publish") as publish:
            embedded_worker.submit("moderation", scan_image, image.pk).result(timeout=120)
        image.refresh_from_db()
        self.assertEqual(image.moderation_status, ModerationStatus.PASSED)
        scanner = "nudenet" if nudenet_installed() else "none"
        self.assertTrue(ImageScan.objects.get(image=image).scanner.startswith(scanner))
        self.assertEqual(publish.call_args.args[1]["type"], "image.moderated")
