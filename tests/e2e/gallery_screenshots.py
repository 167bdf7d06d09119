"""Screenshots of the gallery pages, for looking at the design (not a test: pytest skips
this file). Drives a running studio whose user has images, e.g.:

    .venv/bin/python tests/e2e/gallery_screenshots.py --base-url http://127.0.0.1:8000 \\
        --username demo --password '<password>' --project 1 --team 1 --image 1

It shoots the project gallery (and after an infinite-scroll page), the team gallery
filtered, "My images", the lightbox and the image detail page, in both themes at desktop
and tablet sizes, into test-artifacts/screens/.
"""

import argparse
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.e2e.screenshots import ARTIFACTS, CHROMIUM, Shooter, log_in  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--username", default="demo")
    parser.add_argument("--password", required=True)
    parser.add_argument("--project", type=int, required=True)
    parser.add_argument("--team", type=int, required=True)
    parser.add_argument("--image", type=int, required=True)
    parser.add_argument("--share-url", default="", help="an unlisted image's link, if any")
    parser.add_argument("--out", type=Path, default=ARTIFACTS)
    parser.add_argument("--themes", default="dark,light", help="comma-separated")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.base_url.rstrip("/")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        shots = Shooter(page, args.out, args.themes.split(","))
        log_in(page, base, args.username, args.password)

        page.goto(f"{base}/projects/{args.project}/gallery/")
        expect(page.locator(".gallery-grid .thumb").first).to_be_visible()
        shots.shoot("gallery-project")
        # Infinite scroll: the next page arrives as the end of the grid comes into view.
        before = page.locator(".gallery-grid .thumb").count()
        page.locator("[data-gallery-more]").scroll_into_view_if_needed()
        expect(page.locator(".gallery-grid .thumb")).not_to_have_count(before)
        print("thumbnails before and after scrolling:", before,
              page.locator(".gallery-grid .thumb").count())
        shots.shoot("gallery-project-scrolled", full_page=True)

        page.goto(f"{base}/teams/{args.team}/gallery/?q=fox")
        expect(page.locator(".gallery-grid .thumb").first).to_be_visible()
        shots.shoot("gallery-team-filtered")

        page.goto(f"{base}/images/")
        expect(page.locator(".gallery-grid .thumb").first).to_be_visible()
        shots.shoot("gallery-mine")
        page.locator(".gallery-grid .thumb > a").first.click()
        expect(page.locator("#lightbox")).to_be_visible()
        page.keyboard.press("ArrowRight")
        shots.shoot("gallery-lightbox")
        page.keyboard.press("Escape")

        page.goto(f"{base}/images/{args.image}/")
        shots.shoot("image-detail", full_page=True)
        if args.share_url:
            anonymous = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            anonymous.goto(args.share_url)
            Shooter(anonymous, args.out, args.themes.split(",")).shoot("image-shared")
        browser.close()


if __name__ == "__main__":
    main()
