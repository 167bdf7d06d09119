"""A person's view of LoRAs: upload one to the team's library, stack it in the studio with
a weight, see only LoRAs of the chosen model's family, generate with it and find it on the
image. Drives Debian's chromium through Playwright; screenshots go to test-artifacts/."""

import os

import pytest

from generation.loras.models import JobLora
from generation.models import DiffusionModel, GenerationJob
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.e2e.test_browser_generate import ARTIFACTS, CHROMIUM, launch
from tests.gpu_workers.test_loras import build_lora
from tests.lora_builders import make_lora

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


def test_upload_stack_and_generate_with_a_lora(studio_processes, tiny_model_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    user = User.objects.create_user("lena", "lena@example.org", "a-long-test-password-1")
    team = Team.objects.create(name="Style team")
    Membership.objects.create(team=team, user=user, role=Role.EDITOR)
    project = Project.objects.create(team=team, name="Zines")
    DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir),
                                  default_width=64, default_height=64, default_steps=4)
    DiffusionModel.objects.create(name="xl-base", source="/models/xl", family="sdxl")
    make_lora(team, user, "xl-detail", family="sdxl", description="Fine detail for SDXL",
              trigger_words="intricate, detailed")
    lora_file = build_lora(tiny_model_dir, tmp_path, seed=3).source
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base_url + "/login/")
        page.get_by_label("Username").fill("lena")
        page.get_by_label("Password").fill("a-long-test-password-1")
        page.get_by_role("button", name="Log in").click()

        # Upload: the tiny model's LoRA says no family, so the user chooses it.
        page.goto(f"{base_url}/teams/{team.pk}/loras/")
        page.get_by_role("link", name="Upload LoRA").first.click()
        page.get_by_label("LoRA file").set_input_files(lora_file)
        page.get_by_label("Name").fill("ink wash")
        page.get_by_role("button", name="Upload to the library").click()
        expect(page.get_by_text("choose its family")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "lora-upload-error.png"), full_page=True)
        page.get_by_label("LoRA file").set_input_files(lora_file)
        page.get_by_label("Base family").select_option("sd15")
        page.get_by_role("button", name="Upload to the library").click()
        expect(page.get_by_role("heading", name="ink wash")).to_be_visible()
        expect(page.locator("code.lora-tag")).to_have_text("<lora:ink wash:1>")
        page.screenshot(path=str(ARTIFACTS / "lora-detail.png"), full_page=True)
        page.goto(f"{base_url}/teams/{team.pk}/loras/")
        expect(page.locator(".lora-table tbody tr")).to_have_count(2)
        page.screenshot(path=str(ARTIFACTS / "lora-library.png"), full_page=True)

        # Stack it in the studio: only SD 1.x LoRAs are offered with the SD 1.x model.
        page.goto(f"{base_url}/projects/{project.pk}/")
        page.locator("[data-lora-picker] > summary").click()
        add = page.locator("[data-lora-add]")
        expect(add.locator("option[data-family=sdxl]")).to_be_disabled()
        add.select_option(label="ink wash")
        row = page.locator("[data-lora-rows] [data-lora-row]")
        expect(row).to_have_count(1)
        row.get_by_label("Weight of ink wash", exact=True).fill("0.6")
        expect(row.locator("[data-lora-range]")).to_have_value("0.6")
        page.get_by_label("Prompt", exact=True).fill("a fox in the snow")
        page.screenshot(path=str(ARTIFACTS / "studio-lora-stack.png"))

        # Another family's model: the stacked LoRA says it doesn't fit.
        page.get_by_label("Model", exact=True).select_option(label="xl-base")
        expect(row.locator("[data-lora-mismatch]")).to_be_visible()
        expect(add.locator("option[data-family=sdxl]")).to_be_enabled()
        page.get_by_label("Model", exact=True).select_option(label="tiny-sd15")
        expect(row.locator("[data-lora-mismatch]")).to_be_hidden()

        page.keyboard.press("Control+Enter")
        expect(page.locator("li.job").first).to_have_class("job is-finished", timeout=120_000)
        # The form keeps the stack for the next job.
        expect(page.locator("[data-lora-rows] [data-lora-row]")).to_have_count(1)
        page.locator("#gallery-grid figure.thumb a").first.click()
        details = page.get_by_role("link", name="Details")
        if details.is_visible():
            details.click()
        expect(page.get_by_role("link", name="ink wash · 0.6", exact=True)).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "image-with-lora.png"), full_page=True)
        browser.close()

    job = GenerationJob.objects.get(project=project)
    assert [(used.name, used.weight) for used in JobLora.objects.filter(job=job)] == [
        ("ink wash", 0.6)
    ]
    assert 'Lora hashes: "ink wash: ' in project.images.get().parameters
