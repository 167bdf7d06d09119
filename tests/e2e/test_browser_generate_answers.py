"""Generate's answers in the browser (issue #19): an accepted post leaves the form as the
user left it, but for a random seed again, and adds the job to the queue; after a refused
post, the next accepted one takes the errors away with a fresh form."""

import os
import re

import pytest

from generation.models import DiffusionModel
from tests.e2e.test_browser_daily_loop import log_in, studio  # noqa: F401 (a fixture)
from tests.e2e.test_browser_generate import CHROMIUM, launch

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


def test_the_form_keeps_what_was_typed_and_loses_its_errors(studio_processes, studio):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    # No such folder: the jobs fail on the worker, which these answers never wait for.
    DiffusionModel.objects.create(name="tiny-sd15", source="/models/none",
                                  default_width=128, default_height=128)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        log_in(page, studio_processes["base_url"])
        page.goto(studio_processes["base_url"] + studio["project"].get_absolute_url())
        form = page.locator("#generate-form")
        jobs = page.locator("li.job")

        def generate():
            # The keys, not a click: the token counters' answers move the button.
            page.keyboard.press("Control+Enter")

        form.locator("summary", has_text="Advanced").click()
        page.get_by_label("Prompt", exact=True).fill("a kite in the rain")
        page.get_by_label("Steps", exact=True).fill("0")
        page.get_by_label("Seed", exact=True).fill("1234")
        generate()
        expect(form.locator(".field-error").first).to_be_visible()
        expect(jobs).to_have_count(0)

        # Accepted after the refusal: a fresh form, without the errors.
        form.evaluate("form => { form.dataset.mark = 'before'; }")
        page.get_by_label("Steps", exact=True).fill("12")
        generate()
        expect(jobs).to_have_count(1)
        expect(form).not_to_have_attribute("data-mark", "before")
        expect(form.locator(".field-error")).to_have_count(0)
        expect(page.get_by_label("Seed", exact=True)).to_have_value("")
        expect(page.get_by_label("Prompt", exact=True)).to_have_value("a kite in the rain")
        expect(page.get_by_label("Steps", exact=True)).to_have_value("12")

        # Accepted again: the same form, its seed random again, the queue one job longer.
        form.evaluate("form => { form.dataset.mark = 'before'; }")
        page.get_by_label("Seed", exact=True).fill("42")
        page.get_by_label("Prompt", exact=True).fill("a kite at dusk")
        generate()
        expect(jobs).to_have_count(2)
        expect(form).to_have_attribute("data-mark", "before")
        expect(page.get_by_label("Seed", exact=True)).to_have_value("")
        expect(page.get_by_label("Prompt", exact=True)).to_have_value("a kite at dusk")
        expect(page.get_by_label("Steps", exact=True)).to_have_value("12")
        expect(form.locator("[data-generate]")).not_to_have_class(re.compile("is-loading"))
        browser.close()
