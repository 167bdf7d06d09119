"""A person's view: sign in, generate, watch the progress bar move and the image appear.
Drives Debian's chromium through Playwright; the screenshot is kept in test-artifacts/."""

import os
import re
from pathlib import Path

import pytest

from generation.models import DiffusionModel
from studio.accounts.models import Membership, Project, Role, Team, User

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]

# Records every width the running job's progress bar takes, and whether a step preview
# showed on the canvas, from inside the page.
WATCH_PROGRESS = """
window.progressWidths = [];
window.previewShown = false;
new MutationObserver(() => {
  document.querySelectorAll('li.job .progress-bar').forEach((bar) => {
    const width = bar.style.width;
    if (window.progressWidths[window.progressWidths.length - 1] !== width) {
      window.progressWidths.push(width);
    }
  });
  const preview = document.getElementById('canvas-preview');
  if (preview && preview.src.startsWith('data:image/jpeg')) window.previewShown = true;
}).observe(document.body, {subtree: true, attributes: true, childList: true});
"""


def launch(playwright):
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )


def test_sign_in_generate_and_see_the_image(studio_processes, tiny_model_dir):
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    user = User.objects.create_user("ann", "ann@example.org", "a-long-test-password-1")
    team = Team.objects.create(name="Poster team")
    Membership.objects.create(team=team, user=user, role=Role.EDITOR)
    project = Project.objects.create(team=team, name="Spring posters")
    DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir),
                                  default_width=128, default_height=128, default_steps=30)
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(base_url + "/login/")
        page.get_by_label("Username").fill("ann")
        page.get_by_label("Password").fill("a-long-test-password-1")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Poster team")).to_be_visible()

        page.get_by_role("link", name="Spring posters").first.click()
        expect(page.locator("#live-dot")).to_have_text("Live")
        page.evaluate(WATCH_PROGRESS)
        page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk, oil painting")
        page.keyboard.press("Control+Enter")

        expect(page.locator("li.job").first).to_have_class("job is-finished", timeout=120_000)
        expect(page.locator("#gallery-grid figure.thumb")).to_have_count(1)
        expect(page.locator("#canvas-image")).to_have_attribute(
            "alt", "a lighthouse at dusk, oil painting"
        )
        expect(page.locator("[data-generate]")).not_to_have_class(re.compile("is-loading"))
        # The final image replaced the step previews.
        expect(page.locator("#canvas-preview")).to_have_count(0)
        assert page.evaluate("window.previewShown"), "no step preview showed on the canvas"
        widths = page.evaluate("window.progressWidths")
        page.screenshot(path=str(ARTIFACTS / "studio-after-generate.png"))
        browser.close()

    moving = [w for w in widths if w not in ("0%", "100%")]
    assert len(set(moving)) >= 2, f"progress bar did not move: {widths}"
    assert project.images.count() == 1
