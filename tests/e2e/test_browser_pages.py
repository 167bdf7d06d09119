"""A person's view of the pages around a generation: layout, theme, keyboard and lightbox.
No worker is needed: the project already has a (tiny, 64px) image."""

import os

import pytest

from generation.models import DiffusionModel
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import make_image, make_job
from tests.e2e.test_browser_generate import ARTIFACTS, CHROMIUM, launch

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


def test_layout_theme_keyboard_and_lightbox(studio_processes):
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    user = User.objects.create_user("ben", "ben@example.org", "a-long-test-password-2")
    team = Team.objects.create(name="Layout team")
    Membership.objects.create(team=team, user=user, role=Role.EDITOR)
    project = Project.objects.create(team=team, name="Tiny images")
    model = DiffusionModel.objects.create(name="tiny-sd15", source="/models/tiny-sd15")
    older = make_image(make_job(project, user, model, prompt="an older tiny image"))
    newest = make_image(make_job(project, user, model, prompt="a tiny red square"))
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(base_url + "/login/")
        page.get_by_label("Username").fill("ben")
        page.get_by_label("Password").fill("a-long-test-password-2")
        page.get_by_role("button", name="Log in").click()

        # The New team form is one row: the button sits beside the input.
        name_box = page.get_by_label("Team name").bounding_box()
        button_box = page.get_by_role("button", name="New team").bounding_box()
        assert abs(name_box["y"] - button_box["y"]) < 4, (name_box, button_box)
        assert button_box["x"] > name_box["x"] + name_box["width"]

        # Dark by default; the light theme survives a reload.
        html = page.locator("html")
        expect(html).to_have_attribute("data-theme", "dark")
        page.get_by_role("button", name="Switch to light theme").click()
        page.reload()
        expect(html).to_have_attribute("data-theme", "light")
        page.get_by_role("button", name="Switch to dark theme").click()
        expect(html).to_have_attribute("data-theme", "dark")

        # The first Tab offers to skip the top bar (a page without autofocus).
        page.goto(base_url + newest.get_absolute_url())
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        expect(page.get_by_role("link", name="Skip to content")).to_be_in_viewport()

        page.goto(base_url + project.get_absolute_url())
        # A 64px image is shown large: it fills the stage, not 64 CSS pixels of it.
        canvas = page.locator("#canvas-image")
        expect(canvas).to_have_attribute("alt", "a tiny red square")
        canvas.evaluate("img => img.decode()")
        assert canvas.evaluate("img => img.naturalWidth") == 64
        assert canvas.bounding_box()["height"] > 4 * 64

        # A thumbnail opens the lightbox; arrows step through the gallery; Esc returns.
        thumbs = page.locator("#gallery-grid .thumb > a")
        thumbs.first.click()
        lightbox = page.locator("#lightbox")
        expect(lightbox).to_be_visible()
        expect(lightbox.locator(".lightbox-image")).to_have_attribute("src", newest.file_url())
        page.wait_for_timeout(300)  # the fade-in
        page.screenshot(path=str(ARTIFACTS / "studio-lightbox.png"))
        page.keyboard.press("ArrowRight")
        expect(lightbox.locator(".lightbox-image")).to_have_attribute("src", older.file_url())
        expect(lightbox.get_by_role("link", name="Details")).to_have_attribute(
            "href", older.get_absolute_url()
        )
        page.keyboard.press("Escape")
        expect(lightbox).to_be_hidden()
        expect(thumbs.nth(1)).to_be_focused()
        browser.close()
