"""Inpaint in the browser: start from a gallery image, paint a mask over it, generate,
and the worker redraws inside the mask. Screenshots of the mask editor and the result are
kept in test-artifacts/."""

import os
from pathlib import Path

import pytest

from gallery.models import Image
from generation.models import DiffusionModel, GenerationJob, JobMode, JobStatus
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import make_image, make_job
from tests.e2e.test_browser_generate import CHROMIUM, launch

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


def test_paint_a_mask_and_inpaint(studio_processes, tiny_model_dir):
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    user = User.objects.create_user("ida", "ida@example.org", "a-long-test-password-1")
    team = Team.objects.create(name="Retouch team")
    Membership.objects.create(team=team, user=user, role=Role.EDITOR)
    project = Project.objects.create(team=team, name="Fixes")
    model = DiffusionModel.objects.create(
        name="tiny-sd15", source=str(tiny_model_dir), default_width=128, default_height=128,
        default_steps=8,
    )
    source = make_image(make_job(project, user, model, status=JobStatus.FINISHED, width=128,
                                 height=128, prompt="a brick wall"))
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base_url + "/login/")
        page.get_by_label("Username").fill("ida")
        page.get_by_label("Password").fill("a-long-test-password-1")
        page.get_by_role("button", name="Log in").click()
        page.goto(f"{base_url}/projects/{project.pk}/?source={source.pk}")
        expect(page.locator("#live-dot")).to_have_text("Live")
        expect(page.get_by_text(f"Starting from image #{source.pk}")).to_be_visible()
        expect(page.locator("[data-mask-status]")).to_have_text("No mask: img2img")

        page.get_by_role("button", name="Paint mask").click()
        canvas = page.locator("[data-mask-canvas]")
        expect(canvas).to_be_visible()
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.6, steps=12)
        page.mouse.up()
        page.screenshot(path=str(ARTIFACTS / "studio-mask-editor.png"))
        page.get_by_role("button", name="Use this mask").click()
        expect(page.locator("[data-mask-status]")).to_have_text("Mask painted: inpaint")

        page.get_by_label("Prompt", exact=True).fill("a round window in the wall")
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("li.job")).to_have_count(2)  # the source's job and the new one
        expect(page.locator("li.job").first).to_have_class("job is-finished", timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "studio-after-inpaint.png"))
        browser.close()

    job = GenerationJob.objects.get(prompt="a round window in the wall")
    assert (job.mode, job.status, job.source_image_id) == (
        JobMode.INPAINT, JobStatus.FINISHED, source.pk
    )
    from PIL import Image as PILImage

    mask = PILImage.open(job.mask_upload).convert("L")
    painted = sum(mask.histogram()[128:])
    assert 0 < painted < mask.width * mask.height  # some of it, not all of it
    assert Image.objects.filter(job=job).count() == 1
