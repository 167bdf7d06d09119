"""Publishing approval in a browser: with the site policy on, the owner makes an image
public and the page says it waits for a moderator; the site moderator denies it with a
reason (the owner reads why), the owner asks again, the moderator approves with the
keyboard (a), and a visitor finds it on Explore. The owner's public collection waits the
same way."""

import os

import pytest

from gallery.collections.models import Collection, CollectionItem
from gallery.models import Image, ModerationStatus, Visibility
from gallery.thumbnails import image_thumbnails_make
from generation.models import DiffusionModel
from studio.accounts.models import Membership, Project, Role, Team, User
from studio.moderation.models import Moderator, Notification, Policy
from tests.e2e.test_browser_generate import ARTIFACTS, CHROMIUM, launch
from tests.moderation_helpers import make_textured_image

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]

PASSWORD = "a-long-test-password-7"


def log_in(browser, base_url, username):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(base_url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    return page


def test_a_public_image_waits_for_a_moderator(studio_processes):
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    owner = User.objects.create_user("nia", "nia@example.org", PASSWORD)
    moderator = User.objects.create_user("mo", "mo@example.org", PASSWORD)
    team = Team.objects.create(name="Poster studio")
    Membership.objects.create(team=team, user=owner, role=Role.EDITOR)
    Moderator.objects.create(user=moderator)
    Policy.objects.create(publishing_needs_approval=True)
    project = Project.objects.create(team=team, name="Posters")
    model = DiffusionModel.objects.create(name="tiny-sd15", source="/models/tiny-sd15")
    image = make_textured_image(project, owner, model, seed=3, prompt="a beach poster")
    image_thumbnails_make(image_id=image.pk)
    Image.objects.filter(pk=image.pk).update(moderation_status=ModerationStatus.PASSED)
    board = Collection.objects.create(team=team, name="Summer", created_by=owner,
                                      visibility="team")
    CollectionItem.objects.create(collection=board, image=image, position=0)
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = launch(playwright)
        mine = log_in(browser, base_url, "nia")
        mine.goto(base_url + image.get_absolute_url())
        sharing = mine.locator("#sharing")
        expect(sharing).to_contain_text("Everyone, once a site moderator approves")
        sharing.get_by_text("Public", exact=True).click()
        expect(sharing.locator(".publish-waiting")).to_contain_text("Waiting for a moderator")
        expect(sharing.locator(".badge").first).to_have_text("Project")
        mine.screenshot(path=str(ARTIFACTS / "publishing-image-waiting.png"), full_page=True)

        mod = log_in(browser, base_url, "mo")
        mod.goto(base_url + "/moderation/?kind=publish_request")
        case = mod.locator(".mod-case")
        expect(case).to_have_count(1)
        expect(case).to_contain_text("Publishing request")
        mod.screenshot(path=str(ARTIFACTS / "publishing-queue.png"), full_page=True)
        case.get_by_label("Reason").select_option("spam")
        case.get_by_placeholder("Note (optional)").fill("Three of the same today.")
        case.get_by_role("button", name="Deny").click()
        expect(mod.locator(".alert-success")).to_contain_text("denied")

        mine.goto(base_url + "/notifications/")
        expect(mine.locator("main")).to_contain_text("Three of the same today.")
        mine.goto(base_url + image.get_absolute_url())
        expect(mine.locator("#sharing .publish-waiting")).to_have_count(0)
        mine.locator("#sharing").get_by_text("Public", exact=True).click()
        expect(mine.locator("#sharing .publish-waiting")).to_be_visible()

        mod.goto(base_url + "/moderation/?kind=publish_request")
        expect(mod.locator(".mod-case")).to_have_count(1)
        mod.locator(".mod-case").first.click()
        mod.keyboard.press("a")
        expect(mod.locator(".alert-success")).to_contain_text("approved")

        visitor = browser.new_page(viewport={"width": 1280, "height": 900})
        visitor.goto(base_url + "/explore/")
        expect(visitor.locator(f'[data-image-id="{image.pk}"]')).to_have_count(1)

        # The collection waits the same way.
        mine.goto(base_url + board.get_absolute_url())
        mine.get_by_text("Collection settings").click()
        mine.locator('#collection-settings select[name="visibility"]').select_option("public")
        mine.locator("#collection-settings").get_by_role("button", name="Save").click()
        expect(mine.locator(".publish-waiting")).to_contain_text("Waiting for a moderator")
        mine.screenshot(path=str(ARTIFACTS / "publishing-collection-waiting.png"),
                        full_page=True)
        browser.close()

    assert Image.objects.get(pk=image.pk).visibility == Visibility.PUBLIC
    assert Collection.objects.get(pk=board.pk).visibility == "team"
    assert Notification.objects.filter(user=owner, message__contains="it is public now").exists()
