from contextlib import contextmanager
from unittest import mock

from django.test import TestCase

from generation.models import DiffusionModel
from studio.accounts.models import Membership, Project, Role, Team, User


class StudioTestCase(TestCase):
    """A team with one member per role, an outsider with a team of her own, a project
    and a registered model: every view test gets an "other user can't" case for free."""

    password = "correct horse battery staple"

    @classmethod
    def setUpTestData(cls):
        make = User.objects.create_user
        cls.owner = make("alice", "alice@example.org", cls.password)
        cls.admin = make("bob", "bob@example.org", cls.password)
        cls.editor = make("carol", "carol@example.org", cls.password)
        cls.viewer = make("dave", "dave@example.org", cls.password)
        cls.outsider = make("eve", "eve@example.org", cls.password)

        cls.team = Team.objects.create(name="Alpha")
        for user, role in [
            (cls.owner, Role.OWNER),
            (cls.admin, Role.ADMIN),
            (cls.editor, Role.EDITOR),
            (cls.viewer, Role.VIEWER),
        ]:
            Membership.objects.create(team=cls.team, user=user, role=role)
        cls.project = Project.objects.create(team=cls.team, name="Posters", created_by=cls.owner)

        cls.other_team = Team.objects.create(name="Elsewhere")
        Membership.objects.create(team=cls.other_team, user=cls.outsider, role=Role.OWNER)
        cls.other_project = Project.objects.create(team=cls.other_team, name="Hers")

        cls.model = DiffusionModel.objects.create(
            name="tiny-sd15", source="/models/tiny-sd15", default_width=256, default_height=256
        )

    def users_by_role(self):
        return {
            "owner": self.owner,
            "admin": self.admin,
            "editor": self.editor,
            "viewer": self.viewer,
            "outsider": self.outsider,
        }


class GenerateFormTestCase(StudioTestCase):
    """Posts the studio's generate form (as HTMX does) with `self.url` and `self.params`,
    dispatch mocked; `assert_refused` checks a field's error and that no job was made."""

    def post(self, **overrides):
        from unittest import mock

        with mock.patch("generation.services.enqueue_generation"):
            with self.captureOnCommitCallbacks(execute=True):
                return self.client.post(
                    self.url, {**self.params, **overrides}, headers={"HX-Request": "true"}
                )

    def assert_refused(self, field, message, **overrides):
        from generation.models import GenerationJob

        jobs_before = GenerationJob.objects.count()
        response = self.post(**overrides)
        self.assertEqual(response.status_code, 422)
        self.assertIn(message, " ".join(response.context["form"].errors[field]))
        self.assertContains(response, message, status_code=422)
        self.assertEqual(GenerationJob.objects.count(), jobs_before)


def make_job(project, user, model, **fields):
    from generation.models import GenerationJob

    params = {
        "prompt": "a lighthouse at dusk",
        "steps": 4,
        "guidance_scale": 7.0,
        "width": 64,
        "height": 64,
        "seed": 42,
        **fields,
    }
    return GenerationJob.objects.create(project=project, created_by=user, model=model, **params)


def make_image(job):
    import io

    from django.core.files.base import ContentFile
    from PIL import Image as PILImage

    from gallery.models import Image

    buffer = io.BytesIO()
    PILImage.new("RGB", (job.width, job.height), (200, 80, 40)).save(buffer, format="PNG")
    image = Image(
        project=job.project,
        job=job,
        created_by=job.created_by,
        width=job.width,
        height=job.height,
        prompt=job.prompt,
        seed=job.seed,
        parameters=f"{job.prompt}\nSteps: {job.steps}",
    )
    image.file.save("x.png", ContentFile(buffer.getvalue()), save=False)
    image.save()
    return image


@contextmanager
def published_events(on_event=None):
    """Every event the worker publishes for jobs, in order, into the list yielded: those
    of a job's own thread (generation.execution.publish) and its progress, published with
    other jobs' (generation.progress.publish_all). on_event(payload), if given, sees each
    as it is published."""
    events = []

    def publish(group, payload):
        events.append(payload)
        if on_event is not None:
            on_event(payload)

    def publish_all(messages):
        for group, payload in messages:
            publish(group, payload)

    with mock.patch("generation.execution.publish", side_effect=publish), mock.patch(
        "generation.progress.publish_all", side_effect=publish_all
    ):
        yield events
