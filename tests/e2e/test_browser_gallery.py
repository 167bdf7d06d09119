"""A person browsing a gallery: scroll the grid (the next page arrives), filter it, step
through it in the lightbox past the loaded page, remix an image into the studio's form,
and share one by link with someone who is not signed in. No worker is needed."""

import os

import pytest

from gallery.browse import PAGE_SIZE
from gallery.models import Image
from gallery.thumbnails import image_thumbnails_make
from generation.models import DiffusionModel
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import make_image, make_job
from tests.e2e.test_browser_generate import ARTIFACTS, CHROMIUM, launch

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]

PASSWORD = "a-long-test-password-3"


def test_scroll_filter_lightbox_remix_and_share(studio_processes):
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    user = User.objects.create_user("gil", "gil@example.org", PASSWORD)
    team = Team.objects.create(name="Gallery team")
    Membership.objects.create(team=team, user=user, role=Role.EDITOR)
    project = Project.objects.create(team=team, name="Many images")
    model = DiffusionModel.objects.create(name="tiny-sd15", source="/models/tiny-sd15")
    total = PAGE_SIZE + 5
    images, with_thumbnails = [], set()
    for n in range(total):  # oldest first: the last made is the newest
        prompt = "a lighthouse" if n % 5 == 0 else f"a fox number {n}"
        images.append(make_image(make_job(project, user, model, prompt=prompt, seed=100 + n)))
        if n % 2:
            image_thumbnails_make(image_id=images[-1].pk)
            with_thumbnails.add(images[-1].pk)
    newest_first = images[::-1]
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(base_url + "/login/")
        page.get_by_label("Username").fill("gil")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()

        # From the nav to My images, then the project's gallery from the studio.
        page.get_by_role("link", name="My images").click()
        expect(page.locator(".gallery-grid .thumb")).to_have_count(PAGE_SIZE)
        page.goto(base_url + project.get_absolute_url())
        page.get_by_role("link", name="All images").click()
        thumbs = page.locator(".gallery-grid .thumb > a")
        expect(thumbs).to_have_count(PAGE_SIZE)
        # Thumbnails where made, the original where not yet.
        made, not_yet = sorted(newest_first[:2], key=lambda i: i.pk not in with_thumbnails)
        by_id = page.locator(f'[data-image-id="{made.pk}"] img')
        assert by_id.get_attribute("src") == f"/images/{made.pk}/thumbnail/256/"
        assert "512w" in by_id.get_attribute("srcset")
        assert page.locator(f'[data-image-id="{not_yet.pk}"] img').get_attribute(
            "src"
        ) == not_yet.file_url()

        # The lightbox steps past the last loaded thumbnail: the next page loads.
        thumbs.nth(PAGE_SIZE - 1).click()
        lightbox = page.locator("#lightbox")
        expect(lightbox).to_be_visible()
        expect(lightbox.locator(".lightbox-image")).to_have_attribute(
            "src", newest_first[PAGE_SIZE - 1].file_url()
        )
        page.keyboard.press("ArrowRight")
        expect(lightbox.locator(".lightbox-image")).to_have_attribute(
            "src", newest_first[PAGE_SIZE].file_url()
        )
        expect(thumbs).to_have_count(total)
        page.keyboard.press("Escape")
        expect(lightbox).to_be_hidden()

        # Scrolling: fresh page, the sentinel comes into view, the rest arrives. (From the
        # top: a reload restores the scroll position, at the end, where the next page loads
        # at once.)
        page.evaluate("window.scrollTo(0, 0)")
        page.reload()
        expect(thumbs).to_have_count(PAGE_SIZE)
        page.locator("[data-gallery-more]").scroll_into_view_if_needed()
        expect(thumbs).to_have_count(total)
        expect(page.locator("[data-gallery-more]")).to_have_count(0)

        # Search as you type.
        page.get_by_label("Search prompts").fill("lighthouse")
        expect(thumbs).to_have_count(len([i for i in images if i.prompt == "a lighthouse"]))
        expect(page.get_by_role("status")).to_contain_text("match")
        assert "q=lighthouse" in page.url
        page.screenshot(path=str(ARTIFACTS / "gallery-filtered.png"))

        # Remix: the studio opens with the image's parameters, its own seed.
        chosen = newest_first[3]
        page.goto(base_url + chosen.get_absolute_url())
        page.get_by_role("button", name="Remix").click()
        expect(page.locator("#generate-form")).to_be_visible()
        expect(page.locator("#id_prompt")).to_have_value(chosen.prompt)
        expect(page.locator("#id_seed")).to_have_value(str(chosen.seed))

        # Share by link; someone signed out opens it; back to project-only closes it.
        page.goto(base_url + chosen.get_absolute_url())
        page.get_by_label("Public").check()
        expect(page.locator("#sharing")).to_contain_text("must pass a moderation scan")
        page.get_by_label("Anyone with the link").check()
        link = page.locator("#share-url")
        expect(link).to_be_visible()
        url = link.input_value()
        stranger = browser.new_context().new_page()
        response = stranger.goto(url)
        assert response.status == 200
        # The link shows the picture, not its prompt (the owner hasn't chosen to share it).
        expect(stranger.locator(".canvas-image")).to_have_attribute(
            "alt", "An image shared by link"
        )
        expect(stranger.locator("body")).not_to_contain_text(chosen.prompt)
        assert stranger.locator(".canvas-image").evaluate("img => img.decode().then(() => 1)")
        page.get_by_label("Project").check()
        expect(page.locator("#share-url")).to_have_count(0)
        assert stranger.goto(url).status == 404
        browser.close()
    assert Image.objects.get(pk=chosen.pk).visibility == "project"
