"""Subjects that depict a person train only with a consent record (who, when, scope).
Revoking it disables every LoRA trained from the subject: it leaves the picker, the form,
the API and the worker refuse jobs naming it with a message that says which LoRA and why,
and queued training stops."""

import datetime
from unittest import mock

from django.urls import reverse
from django.utils import timezone

from generation.loras.services import LoraChoice
from generation.models import GenerationJob, JobStatus
from generation.services import ModelNotAllowed, job_create
from generation.training.models import TrainingRun
from generation.training.subjects.models import SubjectConsent
from tests.base import GenerateFormTestCase, make_job
from tests.generation.training.test_training_jobs import TRAINING_FORM
from tests.lora_builders import make_lora
from tests.subject_builders import make_run, make_subject

CONSENT = {"given_by": "Jo Doe", "given_on": "2026-03-01", "scope": "Internal mock-ups"}


class ConsentTests(GenerateFormTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.person = make_subject(cls.team, cls.editor, name="Jo", token="jdoe",
                                  class_word="woman", depicts_person=True)
        cls.url = reverse("project_studio", args=[cls.project.pk])

    def start_training(self):
        self.client.force_login(self.editor)
        with mock.patch("generation.training.services.enqueue_training"):
            with self.captureOnCommitCallbacks(execute=True):
                return self.client.post(
                    reverse("training_start", args=[self.person.pk]),
                    {"project": self.project.pk, "model": self.model.pk, **TRAINING_FORM},
                )

    def record_consent(self, **changes):
        self.client.force_login(self.editor)
        return self.client.post(
            reverse("subject_consent", args=[self.person.pk]), {**CONSENT, **changes}
        )

    def test_a_person_is_trained_only_once_their_consent_is_recorded(self):
        response = self.start_training()
        self.assertContains(response, "depicts a person: record their consent", status_code=422)
        self.assertFalse(TrainingRun.objects.exists())

        self.assertRedirects(self.record_consent(), self.person.get_absolute_url())
        consent = self.person.active_consent()
        self.assertEqual(
            (consent.given_by, consent.given_on, consent.scope, consent.recorded_by),
            ("Jo Doe", datetime.date(2026, 3, 1), "Internal mock-ups", self.editor),
        )
        self.assertEqual(self.start_training().status_code, 302)
        self.assertEqual(TrainingRun.objects.count(), 1)

    def test_a_consent_record_needs_who_when_and_scope(self):
        tomorrow = (timezone.localdate() + datetime.timedelta(days=1)).isoformat()
        for change, field, message in [
            ({"given_by": ""}, "given_by", "required"),
            ({"scope": ""}, "scope", "required"),
            ({"given_on": "soon"}, "given_on", "Enter a valid date"),
            ({"given_on": tomorrow}, "given_on", "can't be dated in the future"),
        ]:
            with self.subTest(field=field):
                response = self.record_consent(**change)
                self.assertEqual(response.status_code, 422)
                self.assertIn(message, " ".join(response.context["consent_form"].errors[field]))
        self.assertFalse(SubjectConsent.objects.exists())

    def test_objects_need_no_consent(self):
        dog = make_subject(self.team, self.editor, token="rexx")
        self.assertIsNone(dog.training_refusal())
        self.client.force_login(self.editor)
        response = self.client.post(reverse("subject_consent", args=[dog.pk]), CONSENT)
        self.assertContains(response, "does not depict a person", status_code=422)

    def test_revoking_consent_disables_the_lora_everywhere(self):
        SubjectConsent.objects.create(subject=self.person, given_by="Jo", given_on="2026-03-01",
                                      scope="All", recorded_by=self.editor)
        lora = make_lora(self.team, self.editor, "Jo")
        make_run(self.person, self.project, self.editor, self.model,
                 status=JobStatus.FINISHED, lora=lora)
        queued_job = make_job(self.project, self.editor, self.model)
        queued_job.job_loras.create(lora=lora, name=lora.name, sha256=lora.sha256, weight=1,
                                    position=0)
        queued_run = make_run(self.person, self.project, self.editor, self.model)
        self.client.force_login(self.editor)
        option = f'<option value="{lora.pk}" data-family="sd15">Jo</option>'
        self.assertContains(self.client.get(self.url), option, html=True)

        response = self.client.post(
            reverse("subject_consent_revoke", args=[self.person.pk]),
            {"reason": "Asked by email"}, follow=True,
        )
        self.assertContains(response, "Consent revoked. Disabled: “Jo”")
        lora.refresh_from_db()
        today = timezone.localdate().isoformat()
        expected = (
            f"LoRA “Jo” is disabled: consent for subject “Jo” was revoked on {today}, so "
            "LoRAs trained from it can no longer be used. Remove it from the job."
        )
        revoked = SubjectConsent.objects.get()
        self.assertEqual((revoked.revoked_by, revoked.revoke_reason),
                         (self.editor, "Asked by email"))

        # Hidden from the picker; picked or written in the prompt, the form refuses it.
        self.assertNotContains(self.client.get(self.url), option, html=True)
        self.params = {"model": self.model.pk, "prompt": "a portrait", "steps": 4,
                       "guidance_scale": 7, "width": 64, "height": 64, "batch_size": 1,
                       "batch_count": 1}
        self.url = reverse("job_create", args=[self.project.pk])
        self.assert_refused("loras", expected, lora=str(lora.pk), lora_weight="1")
        self.assert_refused("prompt", expected, prompt="a portrait <lora:Jo:0.8>")
        # The API's service refuses it too.
        with self.assertRaisesMessage(ModelNotAllowed, expected):
            job_create(user=self.editor, project=self.project,
                       params={**self.params, "model": self.model, "seed": 1,
                               "loras": [LoraChoice(lora, 1.0)]})
        # A job queued before the revocation fails on the worker, saying why.
        from generation.loras.services import job_lora_refs
        from gpu_workers.requests import GenerationFailed

        with self.assertRaisesMessage(GenerationFailed, expected):
            job_lora_refs(GenerationJob.objects.get(pk=queued_job.pk))
        # Queued training of the subject stops; new training is refused.
        queued_run.refresh_from_db()
        self.assertEqual(queued_run.status, JobStatus.CANCELED)
        self.assertContains(self.start_training(), "record their consent", status_code=422)
        # The LoRA's page says so.
        self.assertContains(self.client.get(lora.get_absolute_url()), "Disabled: consent")

    def test_there_is_nothing_to_revoke_without_consent(self):
        self.client.force_login(self.editor)
        response = self.client.post(reverse("subject_consent_revoke", args=[self.person.pk]))
        self.assertContains(response, "no consent in force", status_code=422)
