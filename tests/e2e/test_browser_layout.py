"""The layout's promises at a laptop (1440×900), a small laptop (1280×720) and a phone
(390×844), in a project with a long queue history (issue #15 items 1, 2 and 7): the studio
fits the window (its panes scroll, the page doesn't), Generate and the current image show
without scrolling; on a phone the menu opens, the dashboard fits the width and Generate
brings the result into view. The error pages are the product's, from the real server.
Screenshots of each page at each size land in test-artifacts/layout/. No worker is needed."""

import os

import pytest

from generation.models import DiffusionModel, JobStatus
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import make_image, make_job
from tests.e2e.test_browser_generate import ARTIFACTS, CHROMIUM, launch

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]

PASSWORD = "a-long-test-password-13"
SIZES = {"laptop": (1440, 900), "small-laptop": (1280, 720), "phone": (390, 844)}
SHOTS = ARTIFACTS / "layout"


def inside_viewport(page, locator):
    """Whether the element's whole box is inside the window as it stands (no scrolling)."""
    box = locator.bounding_box()
    size = page.viewport_size
    return (box is not None and box["x"] >= 0 and box["y"] >= 0
            and box["x"] + box["width"] <= size["width"] + 0.5
            and box["y"] + box["height"] <= size["height"] + 0.5), box


def page_overflow(page):
    return page.evaluate(
        "() => ({width: document.documentElement.scrollWidth - innerWidth,"
        " height: document.documentElement.scrollHeight - innerHeight})"
    )


@pytest.fixture
def busy_project(db):
    user = User.objects.create_user("mona", "mona@example.org", PASSWORD)
    team = Team.objects.create(name="Layout and a rather long team name")
    Membership.objects.create(team=team, user=user, role=Role.EDITOR)
    project = Project.objects.create(team=team, name="Posters for the spring campaign")
    model = DiffusionModel.objects.create(name="tiny-sd15", source="/models/tiny-sd15",
                                          default_width=512, default_height=768)
    for n in range(14):  # a long queue history, each job with its image
        job = make_job(project, user, model, prompt=f"a lighthouse at dusk, take {n}", seed=n,
                       width=512, height=768)
        make_image(job)
        job.status = JobStatus.FINISHED
        job.save()
    return project


def log_in(page, base_url):
    page.goto(base_url + "/login/")
    page.get_by_label("Username").fill("mona")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base_url + "/")


@pytest.mark.parametrize("size", SIZES)
def test_the_studio_fits_the_window(studio_processes, busy_project, size):
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    width, height = SIZES[size]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": width, "height": height})
        log_in(page, base_url)
        page.goto(base_url + busy_project.get_absolute_url())
        image = page.locator("#canvas-image")
        expect(image).to_be_visible()
        image.evaluate("img => img.decode()")
        page.screenshot(path=str(SHOTS / f"studio-{size}.png"))

        generate = page.locator("[data-generate]")
        fits, box = inside_viewport(page, generate)
        assert fits, f"Generate at {box} in a {width}×{height} window"
        fits, box = inside_viewport(page, image)
        assert fits, f"the current image at {box} in a {width}×{height} window"
        assert box["height"] > 200, box
        if size != "phone":
            # Three panes, each scrolling on its own: the page itself never scrolls.
            assert page_overflow(page) == {"width": 0, "height": 0}
            # Opening every section of the form keeps Generate in view.
            for summary in page.locator("#generate-form details > summary").all():
                summary.click()
            fits, box = inside_viewport(page, generate)
            assert fits, f"Generate at {box} with the form's sections open"
            assert page_overflow(page)["height"] == 0
        else:
            assert page_overflow(page)["width"] == 0
            # Pressed at the end of the form, Generate brings the result area into view.
            page.get_by_label("Prompt", exact=True).fill("a fox in the snow")
            page.mouse.wheel(0, 2000)
            expect(page.locator("#canvas-stage")).not_to_be_in_viewport()
            with page.expect_response(lambda r: r.url.endswith("/generate/")) as answer:
                generate.click()
            assert answer.value.status == 200
            expect(page.locator("#canvas-stage")).to_be_in_viewport(ratio=1)
            page.wait_for_timeout(300)  # the smooth scroll's end
            page.screenshot(path=str(SHOTS / f"studio-{size}-after-generate.png"))
        browser.close()


def test_phone_menu_and_dashboard(studio_processes, busy_project):
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 390, "height": 844})
        log_in(page, base_url)
        page.screenshot(path=str(SHOTS / "dashboard-phone.png"), full_page=True)
        assert page_overflow(page)["width"] == 0

        nav = page.get_by_role("navigation", name="Main")
        menu = page.get_by_role("button", name="Menu")
        expect(menu).to_be_visible()
        expect(menu).to_have_attribute("aria-expanded", "false")
        expect(nav.get_by_role("link", name="My queue")).to_be_hidden()
        menu.click()
        expect(menu).to_have_attribute("aria-expanded", "true")
        for name in ("Teams & projects", "My queue", "Models", "My images", "Explore"):
            link = nav.get_by_role("link", name=name)
            expect(link).to_be_visible()
            assert inside_viewport(page, link)[0], name
        page.screenshot(path=str(SHOTS / "menu-phone.png"))
        page.keyboard.press("Escape")
        expect(nav.get_by_role("link", name="My queue")).to_be_hidden()
        expect(menu).to_be_focused()
        menu.click()
        nav.get_by_role("link", name="My queue").click()
        page.wait_for_url(base_url + "/queue/")
        expect(page.get_by_role("button", name="Menu")).to_have_attribute(
            "aria-expanded", "false")

        # Wider windows show the links themselves, no menu button.
        for size in ("laptop", "small-laptop"):
            width, height = SIZES[size]
            page.set_viewport_size({"width": width, "height": height})
            page.goto(base_url + "/")
            expect(page.get_by_role("button", name="Menu")).to_be_hidden()
            expect(nav.get_by_role("link", name="My queue")).to_be_visible()
            assert page_overflow(page)["width"] == 0
            page.screenshot(path=str(SHOTS / f"dashboard-{size}.png"), full_page=True)
        browser.close()


def test_error_pages_from_the_server(studio_processes, busy_project):
    """The server runs with DEBUG off in the embedded mode, as in production."""
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page()
        log_in(page, base_url)
        for size, (width, height) in SIZES.items():
            page.set_viewport_size({"width": width, "height": height})
            response = page.goto(base_url + "/no-such-page/")
            assert response.status == 404
            expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
            expect(page.get_by_role("link", name="Back to your teams")).to_be_in_viewport()
            assert page_overflow(page)["width"] == 0
            page.screenshot(path=str(SHOTS / f"404-{size}.png"))
        browser.close()
