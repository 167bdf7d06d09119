"""The studio's daily loop in the browser (issue #15 items 4, 5, 6, 8 and 9): a cold worker
says what it is doing, open sections stay open after Generate, seeds are reused in one
click, queue cards say who, how and how fast, an invite link works signed out, the mask
painter undoes and blurs, prompt history stars and searches cleanly, Explore cards have a
caption and an author. Screenshots land in test-artifacts/daily-loop/."""

import base64
import io
import os
import shutil

import pytest
from PIL import Image as PILImage

from gallery.models import Image, Visibility
from generation.models import DiffusionModel, JobStatus
from studio.accounts.models import Invitation, Membership, Project, Role, Team, User
from tests.base import make_image, make_job
from tests.e2e.test_browser_generate import ARTIFACTS, CHROMIUM, launch

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]

PASSWORD = "a-long-test-password-15"
SHOTS = ARTIFACTS / "daily-loop"

# Every text the queue card's and the canvas's status lines show, as they change.
WATCH_STATUS = """
window.statusTexts = [];
new MutationObserver(() => {
  document.querySelectorAll('[data-job-meta], [data-canvas-meta]').forEach((line) => {
    const text = line.textContent;
    if (!window.statusTexts.includes(text)) window.statusTexts.push(text);
  });
}).observe(document.body, {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture
def studio(db):
    user = User.objects.create_user("lena", "lena@example.org", PASSWORD, first_name="Lena")
    team = Team.objects.create(name="Daily loop")
    Membership.objects.create(team=team, user=user, role=Role.ADMIN)
    project = Project.objects.create(team=team, name="Spring")
    return {"user": user, "team": team, "project": project}


def log_in(page, base_url, username="lena"):
    page.goto(base_url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base_url + "/")


def finished_images(studio, model, seeds):
    images = []
    for seed in seeds:
        job = make_job(studio["project"], studio["user"], model, seed=seed, width=128,
                       height=128, prompt=f"a kite, seed {seed}", status=JobStatus.FINISHED)
        images.append(make_image(job))
    return images


def test_a_cold_model_load_is_shown_then_the_card_says_how_it_went(
    studio_processes, studio, tiny_model_dir, tmp_path
):
    from playwright.sync_api import expect, sync_playwright

    # A folder of its own: no earlier test can have loaded it into the server's worker.
    source = shutil.copytree(tiny_model_dir, tmp_path / "tiny-cold")
    DiffusionModel.objects.create(name="tiny-cold", source=str(source), default_width=128,
                                  default_height=128, default_steps=12)
    base_url = studio_processes["base_url"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        log_in(page, base_url)
        page.goto(base_url + studio["project"].get_absolute_url())
        expect(page.locator("#live-dot")).to_have_text("Live")
        page.evaluate(WATCH_STATUS)
        page.get_by_label("Prompt", exact=True).fill("a paper kite over the sea")
        page.keyboard.press("Control+Enter")
        card = page.locator("li.job").first
        expect(card).to_have_class("job is-finished", timeout=120_000)
        expect(card.locator(".job-facts")).to_have_text("Lena · Text to image")
        expect(card.locator("[data-job-meta]")).to_contain_text(" it/s")
        expect(card.locator("[data-job-meta]")).to_contain_text("took ")
        expect(card.locator(".job-time")).to_have_text("just now")
        page.screenshot(path=str(SHOTS / "studio-finished-card.png"))
        texts = page.evaluate("window.statusTexts")
        browser.close()
    # The model loads after the job starts (step 0) and before its first step. On a loaded
    # machine the embedded worker may announce the load before Generate's answer draws the
    # card: the card then shows the newest announcement it kept ("Models loaded"), which a
    # warm model never sends.
    shown = [text for text in texts if text.startswith("Loading tiny-cold… ")
             or text == "Models loaded"]
    assert shown, texts
    assert texts.index(shown[0]) < texts.index("Step 1 / 12"), texts


def test_open_sections_stay_open_and_seeds_are_one_click_away(studio_processes, studio):
    from playwright.sync_api import expect, sync_playwright

    model = DiffusionModel.objects.create(name="tiny-sd15", source="/models/tiny-sd15",
                                          default_width=128, default_height=128)
    older, newest = finished_images(studio, model, [1111, 2**64 - 3])
    base_url = studio_processes["base_url"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        log_in(page, base_url)
        page.goto(base_url + studio["project"].get_absolute_url())
        form = page.locator("#generate-form")
        seed = form.locator("input[name=seed]")
        form.locator("summary", has_text="Advanced").click()
        form.locator("summary", has_text="From an image").click()
        page.get_by_label("Prompt", exact=True).fill("a kite in the rain")
        jobs_before = page.locator("li.job").count()
        form.locator("[data-generate]").click()
        expect(page.locator("li.job")).to_have_count(jobs_before + 1)
        def section(name):
            return form.locator("details", has=page.locator("summary", has_text=name))

        for name in ("Advanced", "From an image"):
            expect(section(name)).to_have_attribute("open", "")
        expect(section("Hires fix")).not_to_have_attribute("open", "")
        page.reload()
        expect(section("Advanced")).to_have_attribute("open", "")

        # Reuse: the newest image's seed, all 64 bits of it; the dice: random again.
        form.locator("[data-reuse-seed]").click()
        expect(seed).to_have_value(str(2**64 - 3))
        page.screenshot(path=str(SHOTS / "studio-seed-reused.png"))
        form.locator("[data-random-seed]").click()
        expect(seed).to_have_value("")

        # Use seed from the lightbox of the studio's gallery.
        page.locator(f'#gallery-grid figure[data-image-id="{older.pk}"] a').first.click()
        lightbox = page.locator("#lightbox")
        expect(lightbox).to_be_visible()
        lightbox.get_by_role("button", name="Use seed").click()
        expect(lightbox).to_be_hidden()
        expect(seed).to_have_value("1111")

        # From the image's page, the next studio page opens with it.
        page.goto(base_url + newest.get_absolute_url())
        page.get_by_role("button", name="Use seed").click()
        expect(page.get_by_role("button", name="Kept for the studio")).to_be_visible()
        page.screenshot(path=str(SHOTS / "image-page-use-seed.png"), full_page=True)
        page.goto(base_url + studio["project"].get_absolute_url())
        expect(seed).to_have_value(str(2**64 - 3))
        browser.close()


def test_an_invite_link_signed_out_signs_up_and_joins(studio_processes, studio):
    from playwright.sync_api import expect, sync_playwright

    invitation = Invitation.objects.create(team=studio["team"], role=Role.EDITOR,
                                           created_by=studio["user"])
    other = Invitation.objects.create(team=studio["team"], created_by=studio["user"])
    base_url = studio_processes["base_url"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        admin = browser.new_context(
            viewport={"width": 1280, "height": 720},
            permissions=["clipboard-read", "clipboard-write"],
        ).new_page()
        log_in(admin, base_url)
        admin.goto(base_url + studio["team"].get_absolute_url())
        copy = admin.get_by_role("button", name="Copy link")
        expect(copy).to_have_count(2)
        copy.first.click()
        expect(admin.get_by_role("button", name="Copied")).to_be_visible()
        copied = admin.evaluate("navigator.clipboard.readText()")
        admin.screenshot(path=str(SHOTS / "team-open-invitations.png"), full_page=True)

        page = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
        page.goto(base_url + invitation.get_absolute_url())
        expect(page.get_by_role("heading", name="Join Daily loop")).to_be_visible()
        expect(page.get_by_text("Lena invited you as")).to_be_visible()
        page.screenshot(path=str(SHOTS / "invitation-signed-out-phone.png"), full_page=True)
        page.get_by_role("link", name="Sign up to join").click()
        page.get_by_label("Username").fill("newcomer")
        page.get_by_label("Email").fill("newcomer@example.org")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_label("Password confirmation").fill(PASSWORD)
        page.get_by_role("button", name="Sign up").click()
        page.wait_for_url(base_url + invitation.get_absolute_url())
        page.get_by_role("button", name="Accept invitation").click()
        expect(page.get_by_role("heading", name="Daily loop")).to_be_visible()

        # The admin revokes the other open invitation: its link stops working.
        admin.reload()
        admin.get_by_role("button", name="Revoke").click()
        expect(admin.get_by_text("Invitation revoked")).to_be_visible()
        page.goto(base_url + other.get_absolute_url())
        expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
        browser.close()
    assert copied.endswith(("/invitations/" + invitation.token + "/",
                            "/invitations/" + other.token + "/"))
    assert studio["team"].role_of(User.objects.get(username="newcomer")) == Role.EDITOR
    assert not Invitation.objects.filter(pk=other.pk).exists()


def test_the_mask_painter_undoes_and_blurs(studio_processes, studio):
    from playwright.sync_api import expect, sync_playwright

    model = DiffusionModel.objects.create(name="tiny-sd15", source="/models/tiny-sd15",
                                          default_width=128, default_height=128)
    [source] = finished_images(studio, model, [7])
    base_url = studio_processes["base_url"]
    white_pixels = """() => {
      const canvas = document.querySelector('[data-mask-canvas]');
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let white = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i] > 127) white += 1;
      return white;
    }"""
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        log_in(page, base_url)
        page.goto(f"{base_url}{studio['project'].get_absolute_url()}?source={source.pk}")
        page.get_by_role("button", name="Paint mask").click()
        canvas = page.locator("[data-mask-canvas]")
        expect(canvas).to_be_visible()
        undo = page.get_by_role("button", name="Undo")
        expect(undo).to_be_disabled()
        box = canvas.bounding_box()

        def stroke(y):
            page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * y, steps=8)
            page.mouse.up()

        stroke(0.3)
        one = page.evaluate(white_pixels)
        stroke(0.7)
        two = page.evaluate(white_pixels)
        assert 0 < one < two
        undo.click()
        assert page.evaluate(white_pixels) == one
        page.keyboard.press("Control+z")
        assert page.evaluate(white_pixels) == 0
        expect(undo).to_be_disabled()

        stroke(0.5)
        page.locator("[data-mask-blur]").fill("8")
        page.screenshot(path=str(SHOTS / "mask-painter-undo-blur.png"))
        page.get_by_role("button", name="Use this mask").click()
        data_url = page.locator("input[name=mask_data]").input_value()
        browser.close()
    mask = PILImage.open(io.BytesIO(base64.b64decode(data_url.split(",")[1]))).convert("L")
    levels = [level for level, count in enumerate(mask.histogram()) if count]
    assert len(set(levels) - {0, 255}) > 10, "the blurred mask has soft edges"


def test_prompt_history_searches_on_enter_and_shows_a_new_star(studio_processes, studio):
    from playwright.sync_api import expect, sync_playwright

    model = DiffusionModel.objects.create(name="tiny-sd15", source="/models/tiny-sd15")
    finished_images(studio, model, [1, 2])
    base_url = studio_processes["base_url"]
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        errors = []
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        log_in(page, base_url)
        page.goto(base_url + "/history/")
        search = page.get_by_label("Search prompts")
        search.fill("seed 2")
        search.press("Enter")
        expect(page.locator("li.history-entry")).to_have_count(1)
        page.wait_for_timeout(600)  # the typing trigger's delay, and any aborted request
        entry = page.locator("li.history-entry").first
        border = entry.evaluate("e => getComputedStyle(e).borderTopColor")
        star = entry.get_by_role("button", name="Favourite")
        star.click()
        expect(star).to_have_attribute("aria-pressed", "true")
        assert entry.evaluate("e => getComputedStyle(e).borderTopColor") != border
        page.screenshot(path=str(SHOTS / "prompt-history-starred.png"))
        browser.close()
    assert errors == []


def test_explore_cards_have_a_caption_and_an_author(studio_processes, studio):
    from playwright.sync_api import expect, sync_playwright

    model = DiffusionModel.objects.create(name="tiny-sd15", source="/models/tiny-sd15")
    images = finished_images(studio, model, [3, 4, 5])
    Image.objects.filter(pk__in=[i.pk for i in images]).update(
        visibility=Visibility.PUBLIC, moderation_status="passed"
    )
    base_url = studio_processes["base_url"]
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(base_url + "/explore/")
        card = page.locator("#gallery-grid figure.thumb").first
        expect(card.locator(".thumb-caption-text")).to_be_visible()
        expect(card.locator(".thumb-author")).to_have_text("by Lena")
        page.screenshot(path=str(SHOTS / "explore-captions.png"))
        browser.close()


def test_the_secret_link_field_spans_its_panel(studio_processes, studio):
    from playwright.sync_api import sync_playwright

    model = DiffusionModel.objects.create(name="tiny-sd15", source="/models/tiny-sd15")
    [image] = finished_images(studio, model, [9])
    Image.objects.filter(pk=image.pk).update(
        visibility=Visibility.UNLISTED, share_token="s3cret-link-token-for-the-test"
    )
    base_url = studio_processes["base_url"]
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        log_in(page, base_url)
        page.goto(base_url + image.get_absolute_url())
        field = page.locator("#share-url").bounding_box()
        panel = page.locator(".share-link").bounding_box()
        page.locator(".share-link").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "image-secret-link.png"))
        browser.close()
    assert field["width"] >= panel["width"] - 1, (field, panel)
