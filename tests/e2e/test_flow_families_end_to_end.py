"""FLUX.1 and SD 3.x txt2img through real processes (issue #17): the studio's form posted
over HTTP to the server, run by the worker (a Celery worker on Redis, or the embedded one),
on the tiny FLUX.1 and SD3 models; what these families can't do yet is refused by the form,
naming the family, and no job is made."""

import io
import urllib.error

import pytest
from PIL import Image as PILImage

from gallery.models import Image
from generation.models import DiffusionModel, GenerationJob, JobStatus, ModelFamily, SourceKind
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.e2e.http import StudioClient
from tests.e2e.test_every_mode_end_to_end import wait_until_done

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password-1"


@pytest.fixture
def flow_models(tmp_path_factory):
    from gpu_workers.tiny_models import build_tiny_flux, build_tiny_sd3

    root = tmp_path_factory.mktemp("flow-models")
    return {
        "flux": DiffusionModel.objects.create(
            name="tiny-flux1", source=str(build_tiny_flux(root / "flux")),
            source_kind=SourceKind.FOLDER, family=ModelFamily.FLUX1,
        ),
        "sd3": DiffusionModel.objects.create(
            name="tiny-sd3", source=str(build_tiny_sd3(root / "sd3")),
            source_kind=SourceKind.FOLDER, family=ModelFamily.SD3,
        ),
    }


def test_flow_families_generate_txt2img_through_the_worker(studio_processes, flow_models):
    user = User.objects.create_user("fl", "fl@example.org", PASSWORD)
    team = Team.objects.create(name="Flow")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="Flow families")
    client = StudioClient(studio_processes["base_url"])
    client.log_in("fl", PASSWORD)

    def post(**fields):
        params = {"prompt": "a cat on the mat", "negative_prompt": "blurry", "steps": 4,
                  "guidance_scale": 4, "width": 80, "height": 64, "seed": 7, **fields}
        try:
            return client.post(f"/projects/{project.pk}/generate/", params,
                               headers={"HX-Request": "true"})
        except urllib.error.HTTPError as error:  # the form's refusal, as the page gets it
            return error.code, error.read().decode()

    jobs = {}
    for family, model in flow_models.items():
        status, body = post(model=model.pk, batch_size=2)
        assert status == 200, body[:500]
        jobs[family] = GenerationJob.objects.get(project=project, model=model)
    done = wait_until_done(jobs.values())

    for family, job in jobs.items():
        job = done[job.pk]
        assert job.status == JobStatus.FINISHED, (family, job.error)
        images = Image.objects.filter(job=job)
        assert images.count() == 2, family
        for image in images:
            assert (image.width, image.height) == (80, 64)
            assert f"Model: tiny-{'flux1' if family == 'flux' else 'sd3'}" in image.parameters
            assert "Sampler: Euler" in image.parameters
            status, body = client.get(image.file_url())
            assert status == 200, family
            assert PILImage.open(io.BytesIO(body)).info["parameters"] == image.parameters

    status, body = post(model=flow_models["flux"].pk, hires_fix="on", hires_scale=1.5,
                        hires_steps=2, hires_strength=0.5)
    assert status == 422, body[:300]
    assert "FLUX.1 models don&#x27;t support hires fix in the studio yet" in body
    assert GenerationJob.objects.filter(project=project).count() == 2
