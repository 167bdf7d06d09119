"""A person on Explore and in collections: open Explore signed out, sign in and like an
image (the lightbox's button follows the card's), sort by most liked, make a collection,
add two images to it from a gallery's select mode, reorder it (a button, then dragging).
Screenshots of Explore and the collection page land in test-artifacts/. No worker is
needed."""

import io
import os

import pytest
from django.core.files.base import ContentFile
from PIL import Image as PILImage
from PIL import ImageDraw

from gallery.collections.models import Collection
from gallery.models import Image, Like, ModerationStatus, Visibility
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

PASSWORD = "a-long-test-password-5"
PROMPTS = [
    "a lighthouse on a cliff at dusk", "a red fox in fresh snow", "an owl in a moonlit pine",
    "a koi pond in autumn", "a neon city street in rain", "a desert caravan at noon",
    "a glass greenhouse full of ferns", "a paper boat on a puddle", "a hot air balloon festival",
    "a quiet library with tall windows",
]


def painted(image, n):
    """Give the image a picture of its own (a gradient and a sun), so pages look real."""
    hue = n * 37 % 360
    picture = PILImage.new("HSV", (256, 256))
    draw = ImageDraw.Draw(picture)
    for y in range(256):
        draw.line([(0, y), (255, y)], fill=(hue * 255 // 360, 150, 90 + y * 150 // 256))
    draw.ellipse([60 + n * 9 % 90, 50, 150 + n * 9 % 90, 140],
                 fill=((hue + 120) % 360 * 255 // 360, 120, 250))
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="PNG")
    image.file.save("x.png", ContentFile(buffer.getvalue()), save=False)
    image.width = image.height = 256
    image.save()
    image_thumbnails_make(image_id=image.pk)
    return image


def test_explore_like_and_collect(studio_processes):
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    user = User.objects.create_user("hana", "hana@example.org", PASSWORD)
    fans = [User.objects.create_user(f"fan{n}") for n in range(3)]
    team = Team.objects.create(name="Studio Nine")
    Membership.objects.create(team=team, user=user, role=Role.EDITOR)
    project = Project.objects.create(team=team, name="Postcards")
    model = DiffusionModel.objects.create(name="tiny-sd15", source="/models/tiny-sd15")
    images = [
        painted(make_image(make_job(project, user, model, prompt=prompt, seed=n)), n)
        for n, prompt in enumerate(PROMPTS)
    ]
    public = images[:8]
    Image.objects.filter(pk__in=[i.pk for i in public]).update(
        visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
    )
    most_liked = public[2]
    for fan in fans:
        Like.objects.create(user=fan, image=most_liked)
    Like.objects.create(user=fans[0], image=public[5])
    newest = public[-1]
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 800})

        # Signed out: Explore from the login page, public images only, counts but no like
        # button; the nav has it too.
        page.goto(base_url + "/login/")
        page.get_by_role("link", name="explore public images").click()
        expect(page.get_by_role("navigation", name="Main").get_by_role(
            "link", name="Explore")).to_be_visible()
        cards = page.locator(".gallery-grid .thumb")
        expect(cards).to_have_count(len(public))
        expect(page.get_by_role("status")).to_contain_text("8 public images")
        liked_card = page.locator(f'[data-image-id="{most_liked.pk}"]')
        expect(liked_card.locator(".reaction-count")).to_have_text("3")
        expect(liked_card.get_by_role("button", name="Like")).to_have_count(0)

        page.goto(base_url + "/login/?next=/explore/")
        page.get_by_label("Username").fill("hana")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(cards).to_have_count(len(public))

        # Like the newest image from its card.
        card = page.locator(f'[data-image-id="{newest.pk}"]')
        card.hover()
        card.get_by_role("button", name="Like").click()
        expect(card.get_by_role("button", name="Like")).to_have_attribute("aria-pressed", "true")
        expect(card.locator(".reaction-count")).to_have_text("1")

        # The lightbox has the same button: taking the like back there updates the card.
        card.locator("a").first.click()
        lightbox = page.locator("#lightbox")
        expect(lightbox).to_be_visible()
        in_lightbox = lightbox.get_by_role("button", name="Like")
        expect(in_lightbox).to_have_attribute("aria-pressed", "true")
        in_lightbox.click()
        expect(lightbox.get_by_role("button", name="Like")).to_have_attribute(
            "aria-pressed", "false"
        )
        expect(card.locator(".reaction-count")).to_have_text("0")
        lightbox.get_by_role("button", name="Like").click()  # and like it again
        expect(card.locator(".reaction-count")).to_have_text("1")
        page.keyboard.press("Escape")
        expect(lightbox).to_be_hidden()
        page.reload()
        expect(card.get_by_role("button", name="Like")).to_have_attribute("aria-pressed", "true")

        # Most liked first.
        page.get_by_text("Most liked").click()
        expect(cards.first).to_have_attribute("data-image-id", str(most_liked.pk))
        assert "sort=liked" in page.url
        page.screenshot(path=str(ARTIFACTS / "explore.png"))

        # A collection for the team, from its collections page.
        page.goto(base_url + f"/teams/{team.pk}/collections/")
        page.get_by_label("Name").fill("Postcard picks")
        page.get_by_label("Description").fill("The ones for the print run")
        page.get_by_label("Who can see it").select_option("team")
        page.get_by_role("button", name="Make collection").click()
        expect(page.get_by_role("heading", name="Postcard picks")).to_be_visible()

        # The project's gallery: select two images, add them to the collection at once.
        page.goto(base_url + f"/projects/{project.pk}/gallery/")
        page.get_by_role("button", name="Select").click()
        first, second = images[-1], images[4]  # one private, one public
        page.locator(f'[data-image-id="{first.pk}"]').click()
        page.locator(f'[data-image-id="{second.pk}"]').click()
        expect(page.locator("[data-select-count]")).to_have_text("2 selected")
        expect(page.locator("#lightbox")).to_be_hidden()  # selecting, not opening
        page.get_by_label("Collection").select_option(label="Postcard picks · Studio Nine")
        page.get_by_role("button", name="Add to collection").click()
        expect(page.locator("#select-result")).to_contain_text(
            "2 images added to “Postcard picks”"
        )
        page.screenshot(path=str(ARTIFACTS / "gallery-select.png"))
        expect(page.locator("[data-select-count]")).to_have_text("None selected")

        # The collection: both images in order; the second moves up; it stays so.
        page.locator("#select-result").get_by_role("link", name="Open it").click()
        grid = page.locator(".collection-items .thumb")
        expect(grid).to_have_count(2)
        expect(grid.first).to_have_attribute("data-image-id", str(first.pk))
        page.get_by_role("button", name=f"Move image {second.pk} earlier").click()
        expect(grid.first).to_have_attribute("data-image-id", str(second.pk))
        page.reload()
        expect(grid.first).to_have_attribute("data-image-id", str(second.pk))
        # Dragging the first image's card onto the second's puts it back before it.
        page.locator(f'[data-collection-item="{first.pk}"]').drag_to(
            page.locator(f'[data-collection-item="{second.pk}"]')
        )
        expect(grid.first).to_have_attribute("data-image-id", str(first.pk))
        page.reload()
        expect(grid.first).to_have_attribute("data-image-id", str(first.pk))
        page.get_by_role("button", name="Make cover").last.click()
        expect(page.locator(".collection-hero-cover img")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "collection.png"))
        page.goto(base_url + f"/teams/{team.pk}/collections/")
        page.screenshot(path=str(ARTIFACTS / "collections.png"))
        page.goto(base_url + f"/images/{second.pk}/")
        expect(page.get_by_role("link", name="Postcard picks")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "image-collections.png"), full_page=True)
        browser.close()
    assert Like.objects.filter(user=user, image=newest).count() == 1
    collection = Collection.objects.get(name="Postcard picks")
    assert collection.team == team and collection.created_by == user
    assert list(collection.items.order_by("position").values_list("image", flat=True)) == [
        first.pk, second.pk
    ]
    assert collection.cover_id == second.pk
