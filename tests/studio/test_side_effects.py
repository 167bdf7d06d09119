"""An image's after-commit side effects are independent: one that fails (a broker that
can't be reached) neither skips the others nor fails the work that committed."""

from unittest import mock

from gallery.services import image_thumbnails_schedule
from studio.moderation.scanning import image_scan_schedule
from tests.base import StudioTestCase, make_image, make_job


class SideEffectTests(StudioTestCase):
    def test_a_failing_thumbnail_message_does_not_skip_the_scan(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        with mock.patch("gallery.services.enqueue_thumbnails",
                        side_effect=ConnectionError("broker down")) as thumbnails, \
                mock.patch("studio.moderation.dispatch.enqueue_scan") as scan, \
                self.assertLogs("django", "ERROR") as logs:
            with self.captureOnCommitCallbacks(execute=True):
                image_thumbnails_schedule(image=image)
                image_scan_schedule(image=image)
        thumbnails.assert_called_once_with(image.pk)
        scan.assert_called_once_with(image.pk)
        self.assertIn("broker down", "\n".join(logs.output))

    def test_a_failing_scan_message_is_logged_not_raised(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        with mock.patch("studio.moderation.dispatch.enqueue_scan",
                        side_effect=ConnectionError("broker down")), \
                self.assertLogs("django", "ERROR"):
            with self.captureOnCommitCallbacks(execute=True):
                image_scan_schedule(image=image)
