"""A run's LoRA takes its subject's name, so a name a LoRA refuses (<, >, : — the prompt's
<lora:name:weight> syntax) stops the run when it is requested, not after training."""

from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from generation.training.execution import TrainingFailed, training_request
from generation.training.models import TrainingRun
from generation.training.services import training_run_create
from tests.base import StudioTestCase
from tests.generation.training.test_training_jobs import TRAINING_FORM
from tests.subject_builders import make_run, make_subject

pytestmark = pytest.mark.django_db

REFUSAL = "Rename “Rex: good dog” before training: its LoRA takes its name."


class SubjectNameTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.subject = make_subject(cls.team, cls.editor, name="Rex: good dog")
        cls.url = reverse("training_start", args=[cls.subject.pk])

    def post(self, user):
        self.client.force_login(user)
        data = {"project": self.project.pk, "model": self.model.pk, **TRAINING_FORM}
        with mock.patch("generation.training.services.enqueue_training") as enqueue:
            with self.captureOnCommitCallbacks(execute=True):
                response = self.client.post(self.url, data)
        return response, enqueue

    def test_the_request_is_refused_naming_the_character_until_renamed(self):
        self.client.force_login(self.editor)
        response = self.client.get(self.subject.get_absolute_url())
        self.assertContains(response, REFUSAL)
        response, enqueue = self.post(self.editor)
        self.assertContains(response, REFUSAL, status_code=422)
        self.assertContains(response, "A LoRA&#x27;s name can&#x27;t contain :", status_code=422)
        self.assertFalse(TrainingRun.objects.exists())
        enqueue.assert_not_called()
        # Someone outside the team learns nothing and queues nothing.
        response, _ = self.post(self.outsider)
        self.assertEqual(response.status_code, 404)
        self.assertFalse(TrainingRun.objects.exists())

        self.subject.name = "Rex the good dog"
        self.subject.save()
        response, enqueue = self.post(self.editor)
        run = TrainingRun.objects.get()
        self.assertRedirects(response, run.get_absolute_url())
        enqueue.assert_called_once_with(run.pk)

    def test_api_callers_are_refused_too(self):
        params = {"model": self.model}
        with self.assertRaises(ValidationError) as raised:
            training_run_create(
                subject=self.subject, project=self.project, user=self.editor, params=params
            )
        self.assertIn(REFUSAL, raised.exception.messages[0])
        self.assertFalse(TrainingRun.objects.exists())

    def test_a_run_queued_before_fails_before_training_saying_why(self):
        run = make_run(self.subject, self.project, self.editor, self.model)
        with self.assertRaises(TrainingFailed) as raised:
            training_request(run)
        self.assertIn(REFUSAL, str(raised.exception))
