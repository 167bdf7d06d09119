"""Someone from another team finds a public image on Explore, remixes it into her own
project (the form arrives filled), generates with the embedded worker's tiny model, and
the new image's page shows the original as its remix parent in the lineage graph."""

import os

import pytest

from gallery.models import Image, ModerationStatus, Visibility
from generation.models import DiffusionModel, GenerationJob, JobMode, JobStatus
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import make_image, make_job
from tests.e2e.test_browser_generate import ARTIFACTS, CHROMIUM, launch

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]

PASSWORD = "a-long-test-password-7"


def test_remix_public_work_from_explore(studio_processes, tiny_model_dir):
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    maker = User.objects.create_user("mo", "mo@example.org", PASSWORD)
    makers = Team.objects.create(name="Makers")
    Membership.objects.create(team=makers, user=maker, role=Role.EDITOR)
    gallery = Project.objects.create(team=makers, name="Showcase")
    model = DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir),
                                          default_width=128, default_height=128)
    # Made earlier (not waiting for the worker) from a sketch only its team sees.
    sketch = make_image(make_job(gallery, maker, model, prompt="a private sketch",
                                 width=128, height=128, status=JobStatus.FINISHED))
    job = make_job(gallery, maker, model, prompt="a paper crane over a lake",
                   negative_prompt="blurry", steps=4, seed=4242, width=128, height=128,
                   mode=JobMode.IMG2IMG, source_image=sketch, strength=0.6,
                   status=JobStatus.FINISHED)
    original = make_image(job)
    # The team's own remix of it, which Ola may not see: counted, never shown.
    make_image(make_job(gallery, maker, model, prompt="the team's take", remix_of=original,
                        width=128, height=128, status=JobStatus.FINISHED))
    Image.objects.filter(pk=original.pk).update(
        visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
    )
    remixer = User.objects.create_user("ola", "ola@example.org", PASSWORD)
    hers = Team.objects.create(name="Ola's studio")
    Membership.objects.create(team=hers, user=remixer, role=Role.OWNER)
    project = Project.objects.create(team=hers, name="Remixes")
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base_url + "/login/")
        page.get_by_label("Username").fill("ola")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()

        page.get_by_role("link", name="Explore").click()
        page.locator(f'[data-image-id="{original.pk}"] a').first.click()
        page.locator("#lightbox").get_by_role("link", name="Details").click()
        expect(page.locator(".canvas-image")).to_have_attribute("alt", original.prompt)
        page.get_by_role("button", name="Remix").click()

        # Her project's studio, the form filled from the image.
        expect(page.locator("#generate-form")).to_be_visible()
        assert page.url.endswith(f"/projects/{project.pk}/?remix={original.pk}")
        expect(page.locator("#id_prompt")).to_have_value("a paper crane over a lake")
        expect(page.locator("#id_negative_prompt")).to_have_value("blurry")
        expect(page.locator("#id_seed")).to_have_value("4242")
        expect(page.locator("#id_steps")).to_have_value("4")
        notice = page.locator("[data-import-notice]")
        expect(notice).to_contain_text(f"Remix of image {original.pk}")
        expect(notice).to_contain_text("Its source image (not one of your team's images)")
        expect(page.locator("#id_strength")).to_have_value("0.6")
        page.screenshot(path=str(ARTIFACTS / "remix-form.png"))

        page.locator("#id_prompt").focus()
        page.keyboard.press("Control+Enter")
        expect(page.locator("li.job").first).to_have_class("job is-finished", timeout=180_000)
        made = page.locator("#gallery-grid figure.thumb").first.get_attribute("data-image-id")

        page.goto(f"{base_url}/images/{made}/")
        graph = page.locator(".lineage-graph")
        expect(graph.locator(f'a[data-lineage-image="{original.pk}"]')).to_be_visible()
        expect(graph.locator(".lineage-edge.is-remix text")).to_have_text("remix")
        expect(page.locator("#lineage-summary")).to_contain_text(f"image {original.pk} (remix)")
        expect(graph.locator(".lineage-node.is-hidden")).to_have_count(1)  # its sketch
        expect(page.locator("section.lineage")).not_to_contain_text("private sketch")
        page.locator("section.lineage").screenshot(path=str(ARTIFACTS / "remix-lineage.png"))

        # The original's page counts the remix.
        page.goto(base_url + original.get_absolute_url())
        expect(page.locator("section.lineage")).to_contain_text("2 remixes")
        expect(page.locator("#lineage-summary")).to_contain_text(
            "1 image made from it, and 1 not shared with you"
        )
        page.locator("section.lineage").screenshot(
            path=str(ARTIFACTS / "remix-lineage-original.png")
        )
        browser.close()
    remix_job = GenerationJob.objects.get(project=project)
    assert remix_job.remix_of_id == original.pk
    assert [image.pk for image in remix_job.images.all()] == [int(made)]
