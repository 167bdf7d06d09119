"""Who may see and change subjects, their image files, training runs and samples: team
members see them, editors change them, viewers get 403 for changes, everyone else a 404
(pages and files alike), and nothing changes for those refused."""

from unittest import mock

from django.core.files.base import ContentFile
from django.urls import reverse

from generation.models import JobStatus
from generation.training.models import TrainingRun, TrainingSample
from generation.training.subjects.models import Subject, SubjectConsent
from tests.base import StudioTestCase
from tests.generation.training.test_training_jobs import TRAINING_FORM
from tests.subject_builders import image_bytes, image_upload, make_run, make_subject

MAY_VIEW = {"owner", "admin", "editor", "viewer"}
MAY_MANAGE = {"owner", "admin", "editor"}


class SubjectAccessTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.subject = make_subject(cls.team, cls.editor, depicts_person=True)
        SubjectConsent.objects.create(subject=cls.subject, given_by="Jo", given_on="2026-01-02",
                                      scope="All", recorded_by=cls.editor)
        cls.image = cls.subject.images.first()
        cls.training_run = make_run(cls.subject, cls.project, cls.editor, cls.model,
                           status=JobStatus.FINISHED, log="step 1")
        cls.sample = TrainingSample(run=cls.training_run, step=4)
        cls.sample.file.save("s.png", ContentFile(image_bytes(size=(64, 64))), save=False)
        cls.sample.save()

    def get_as(self, user, url):
        self.client.force_login(user)
        return self.client.get(url)

    def test_members_see_pages_and_files_and_others_get_404(self):
        urls = [
            reverse("team_subjects", args=[self.team.pk]),
            self.subject.get_absolute_url(),
            reverse("subject_image_file", args=[self.image.pk, "original"]),
            reverse("subject_image_file", args=[self.image.pk, "crop"]),
            self.training_run.get_absolute_url(),
            self.sample.get_absolute_url(),
        ]
        for role, user in self.users_by_role().items():
            for url in urls:
                with self.subTest(role=role, url=url):
                    status = self.get_as(user, url).status_code
                    self.assertEqual(status, 200 if role in MAY_VIEW else 404)

    def test_signed_out_visitors_are_sent_to_log_in(self):
        for url in [self.subject.get_absolute_url(), self.sample.get_absolute_url(),
                    reverse("subject_image_file", args=[self.image.pk, "original"])]:
            response = self.client.get(url)
            self.assertEqual(response.status_code, 302)
            self.assertIn(reverse("login"), response["Location"])

    def test_only_editors_open_the_new_subject_form(self):
        url = reverse("subject_new", args=[self.team.pk])
        for role, user in self.users_by_role().items():
            with self.subTest(role=role):
                expected = 200 if role in MAY_MANAGE else 403 if role in MAY_VIEW else 404
                self.assertEqual(self.get_as(user, url).status_code, expected)

    def test_viewers_and_outsiders_change_nothing(self):
        posts = [
            (reverse("subject_new", args=[self.team.pk]),
             {"name": "X", "class_word": "cat", "token": "qqq"}),
            (reverse("subject_images_upload", args=[self.subject.pk]),
             {"images": [image_upload()]}),
            (reverse("subject_image_update", args=[self.image.pk]),
             {"x": "0", "y": "0", "size": "256", "caption": "hacked"}),
            (reverse("subject_image_delete", args=[self.image.pk]), {}),
            (reverse("subject_delete", args=[self.subject.pk]), {}),
            (reverse("subject_consent_revoke", args=[self.subject.pk]), {}),
            (reverse("subject_consent", args=[self.subject.pk]),
             {"given_by": "X", "given_on": "2026-01-01", "scope": "x"}),
            (reverse("training_start", args=[self.subject.pk]),
             {"project": self.project.pk, "model": self.model.pk, **TRAINING_FORM}),
            (reverse("training_estimate", args=[self.subject.pk]), TRAINING_FORM),
            (reverse("training_cancel", args=[self.training_run.pk]), {}),
        ]
        for user, status in [(self.viewer, 403), (self.outsider, 404)]:
            self.client.force_login(user)
            for url, data in posts:
                with self.subTest(user=user.username, url=url):
                    with mock.patch("generation.training.services.enqueue_training"):
                        response = self.client.post(url, data)
                    self.assertEqual(response.status_code, status)
        self.assertEqual(Subject.objects.count(), 1)
        self.assertEqual(self.subject.images.count(), 3)
        self.image.refresh_from_db()
        self.assertEqual((self.image.caption, self.image.crop_size), ("", None))
        self.assertIsNotNone(self.subject.active_consent())
        self.assertEqual(TrainingRun.objects.count(), 1)

    def test_the_outsiders_own_team_lists_none_of_these(self):
        make_subject(self.other_team, self.outsider, name="Hers", token="hers")
        response = self.get_as(self.outsider, reverse("team_subjects", args=[self.other_team.pk]))
        self.assertContains(response, "Hers")
        self.assertNotContains(response, self.subject.name)

    def test_a_run_cannot_be_started_in_another_teams_project(self):
        self.client.force_login(self.editor)
        with mock.patch("generation.training.services.enqueue_training"):
            response = self.client.post(
                reverse("training_start", args=[self.subject.pk]),
                {"project": self.other_project.pk, "model": self.model.pk, **TRAINING_FORM},
            )
        self.assertEqual(response.status_code, 422)
        self.assertIn("Choose a project you generate in",
                      str(response.context["training_form"].errors["project"]))
        self.assertEqual(TrainingRun.objects.count(), 1)

    def test_the_run_page_and_its_live_partial(self):
        response = self.get_as(self.viewer, self.training_run.get_absolute_url())
        self.assertContains(response, f'data-events-path="/ws/projects/{self.project.pk}/"')
        self.assertContains(response, self.sample.get_absolute_url())
        self.assertNotContains(response, "Cancel training")  # ended, and not hers
        response = self.client.get(
            self.training_run.get_absolute_url(),
            headers={"HX-Request": "true", "HX-Target": "training-state"},
        )
        self.assertContains(response, 'id="training-state"')
        self.assertNotContains(response, "<html")
