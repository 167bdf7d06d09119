"""A person's view of training: create a subject, add its photos, start a short run on the
tiny model and watch it live (steps, the loss chart, samples, the log) until its LoRA is
in the library, showing the samples. Drives Debian's chromium through Playwright;
screenshots go to test-artifacts/."""

import os

import pytest

from generation.models import DiffusionModel, JobStatus
from generation.training.models import TrainingRun
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.e2e.test_browser_generate import ARTIFACTS, CHROMIUM, launch
from tests.subject_builders import image_bytes

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


def test_create_a_subject_train_it_and_watch_the_run(studio_processes, tiny_model_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    user = User.objects.create_user("milo", "milo@example.org", "a-long-test-password-1")
    team = Team.objects.create(name="Pets")
    Membership.objects.create(team=team, user=user, role=Role.EDITOR)
    Project.objects.create(team=team, name="Portraits")
    DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir),
                                  default_width=64, default_height=64, default_steps=4)
    photos = []
    for n in range(3):
        path = tmp_path / f"photo-{n}.jpg"
        path.write_bytes(image_bytes(size=(320 + 40 * n, 288), colour=(60 * n, 120, 200),
                                     format="JPEG"))
        photos.append(str(path))
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base_url + "/login/")
        page.get_by_label("Username").fill("milo")
        page.get_by_label("Password").fill("a-long-test-password-1")
        page.get_by_role("button", name="Log in").click()

        page.goto(f"{base_url}/teams/{team.pk}/")
        page.get_by_role("link", name="Subjects").click()
        page.get_by_role("link", name="New subject").first.click()
        page.get_by_label("Name").fill("Biscuit")
        page.get_by_label("Class word").fill("dog")
        page.get_by_label("Token").fill("bsqt")
        page.get_by_role("button", name="Create subject").click()
        expect(page.locator("code.subject-prompt")).to_have_text("a photo of bsqt dog")

        page.get_by_label("Images").set_input_files(photos)
        page.get_by_role("button", name="Add images").click()
        expect(page.locator(".subject-image")).to_have_count(3)
        # A crop placed by hand on the widest photo, and a caption.
        widest = page.locator(".subject-image").nth(2)
        widest.locator("summary").click()
        widest.get_by_label("x").fill("100")
        widest.get_by_label("Size").fill("280")
        widest.get_by_label("Caption").fill("bsqt dog on the grass")
        widest.get_by_role("button", name="Save").click()
        expect(page.get_by_text("crop 280px at 100, 0")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "subject-detail.png"), full_page=True)

        # Only the model's family's presets are offered: FLUX.1's fp8 one is not SD's.
        expect(page.locator("label.preset-choice", has_text="24 GB (fp8)")).to_be_hidden()
        expect(page.locator("label.preset-choice", has_text="Quick")).to_be_visible()
        expect(page.locator('input[name="fp8_base"]')).to_be_hidden()
        # A preset fills the settings; changing one makes the run "Custom".
        page.locator("label.preset-choice", has_text="Quick").click()
        expect(page.get_by_label("Steps")).to_have_value("400")
        expect(page.locator("#training-estimate")).to_contain_text("GB of GPU memory")
        quick_estimate = page.locator("#training-estimate").inner_text()
        page.get_by_label("Steps").fill("6")
        expect(page.locator("#training-estimate")).not_to_have_text(quick_estimate)
        page.get_by_label("Resolution").fill("64")
        page.get_by_label("Sample every").fill("2")
        page.get_by_label("Seed").fill("5")
        expect(page.locator('input[name="preset"][value="custom"]')).to_be_checked()
        page.get_by_role("button", name="Start training").click()

        expect(page.get_by_role("heading", name="Training Biscuit")).to_be_visible()
        expect(page.locator("[data-run-status]")).to_have_text("Finished", timeout=120_000)
        expect(page.locator(".sample-grid img")).to_have_count(3)
        expect(page.locator("[data-run-step]")).to_have_text("6")
        points = page.locator("[data-loss-line]").get_attribute("points")
        assert len(points.split()) == 6
        expect(page.locator("[data-run-log]")).to_contain_text("Added “Biscuit”")
        page.screenshot(path=str(ARTIFACTS / "training-run.png"), full_page=True)

        page.get_by_role("link", name="Biscuit").last.click()
        expect(page.get_by_role("heading", name="Trained in the studio")).to_be_visible()
        expect(page.locator(".lora-training-samples img")).to_have_count(3)
        page.screenshot(path=str(ARTIFACTS / "trained-lora.png"), full_page=True)
        browser.close()

    run = TrainingRun.objects.get()
    assert (run.status, run.steps, run.resolution, run.preset) == (
        JobStatus.FINISHED, 6, 64, "custom"
    )
