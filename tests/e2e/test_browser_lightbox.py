"""A person stepping through a gallery with the arrow keys: in the project's gallery, the
team's, My images and Explore, → goes through five images one by one and ← comes back,
although each step replaces the lightbox's like button (which held the focus). No worker
is needed."""

import os

import pytest

from gallery.models import Image, ModerationStatus, Visibility
from generation.models import DiffusionModel
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import make_image, make_job
from tests.e2e.test_browser_generate import CHROMIUM, launch

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]

PASSWORD = "a-long-test-password-12"


def test_arrow_keys_step_through_five_images_in_every_gallery(studio_processes):
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    user = User.objects.create_user("lena", "lena@example.org", PASSWORD)
    team = Team.objects.create(name="Arrow team")
    Membership.objects.create(team=team, user=user, role=Role.EDITOR)
    project = Project.objects.create(team=team, name="Five images")
    model = DiffusionModel.objects.create(name="tiny-sd15", source="/models/tiny-sd15")
    images = [
        make_image(make_job(project, user, model, prompt=f"a fox number {n}", seed=n))
        for n in range(5)
    ]
    Image.objects.filter(pk__in=[i.pk for i in images]).update(
        visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
    )
    newest_first = [image.file_url() for image in images[::-1]]
    galleries = {
        "project": f"/projects/{project.pk}/gallery/",
        "team": f"/teams/{team.pk}/gallery/",
        "my images": "/images/",
        "explore": "/explore/",
    }

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(base_url + "/login/")
        page.get_by_label("Username").fill("lena")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(base_url + "/")

        for kind, path in galleries.items():
            page.goto(base_url + path)
            page.locator(".gallery-grid .thumb > a").first.click()
            lightbox_image = page.locator("#lightbox .lightbox-image")
            expect(lightbox_image, kind).to_have_attribute("src", newest_first[0])
            for url in newest_first[1:]:
                page.keyboard.press("ArrowRight")
                expect(lightbox_image, kind).to_have_attribute("src", url)
            page.keyboard.press("ArrowRight")  # the last image: nothing further
            expect(lightbox_image, kind).to_have_attribute("src", newest_first[-1])
            for url in newest_first[-2::-1]:
                page.keyboard.press("ArrowLeft")
                expect(lightbox_image, kind).to_have_attribute("src", url)
            page.keyboard.press("Escape")
            expect(page.locator("#lightbox"), kind).to_be_hidden()
        browser.close()
