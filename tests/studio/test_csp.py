"""A Content-Security-Policy on every response (django-csp): scripts and styles only from
the site's own files, no inline scripts, no eval, no style attributes; htmx configured to
need neither. Pages carry measures as data attributes that static/js/measures.js applies."""

import os
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from tests.base import StudioTestCase, make_image, make_job

TEMPLATES = Path(settings.BASE_DIR) / "templates"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I)
EVENT_HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)
STYLE_ATTRIBUTE = re.compile(r"\sstyle\s*=", re.I)
JAVASCRIPT_URL = re.compile(r"javascript:", re.I)


def policy(response):
    header = response["Content-Security-Policy"]
    return {
        name: values
        for name, *values in (directive.split() for directive in header.split(";") if directive)
    }


def assert_no_inline_code(test, html, where):
    checks = [("inline <script>", INLINE_SCRIPT), ("on* handler", EVENT_HANDLER),
              ("style attribute", STYLE_ATTRIBUTE), ("javascript: URL", JAVASCRIPT_URL)]
    for name, pattern in checks:
        found = pattern.search(html)
        excerpt = found and html[found.start():found.end() + 60]
        test.assertIsNone(found, f"{where}: {name} {excerpt}")


class ContentSecurityPolicyTests(StudioTestCase):
    def test_every_page_sends_a_strict_policy(self):
        self.client.force_login(self.editor)
        image = make_image(make_job(self.project, self.editor, self.model))
        for url in [reverse("login"), reverse("dashboard"), self.project.get_absolute_url(),
                    image.get_absolute_url(), image.file_url(), "/no-such-page/"]:
            with self.subTest(url=url):
                directives = policy(self.client.get(url))
                self.assertEqual(directives["script-src"], ["'self'"])
                self.assertEqual(directives["style-src"], ["'self'"])
                self.assertEqual(directives["default-src"], ["'self'"])
                self.assertEqual(directives["object-src"], ["'none'"])
                self.assertEqual(directives["frame-ancestors"], ["'none'"])
                header = self.client.get(url)["Content-Security-Policy"]
                self.assertNotIn("unsafe-", header)

    def test_the_headers_sent_before_stay(self):
        response = self.client.get(reverse("login"))
        self.assertEqual(response["X-Frame-Options"], "DENY")
        self.assertEqual(response["X-Content-Type-Options"], "nosniff")

    def test_htmx_is_configured_for_it(self):
        html = self.client.get(reverse("login")).content.decode()
        config = re.search(r'<meta name="htmx-config" content=\'([^\']*)\'', html).group(1)
        self.assertIn('"allowEval": false', config)
        self.assertIn('"includeIndicatorStyles": false', config)

    def test_no_template_holds_inline_code_or_styles(self):
        for path in sorted(TEMPLATES.rglob("*.html")):
            with self.subTest(template=str(path.relative_to(TEMPLATES))):
                assert_no_inline_code(self, path.read_text(), path.name)

    def test_pages_with_measures_carry_them_as_data(self):
        job = make_job(self.project, self.editor, self.model, status="running", progress_step=2)
        self.client.force_login(self.editor)
        html = self.client.get(self.project.get_absolute_url()).content.decode()
        assert_no_inline_code(self, html, "studio page")
        self.assertIn(f'data-progress="{job.progress_percent()}"', html)


@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="no /usr/bin/chromium")
def test_measures_js_sets_what_the_data_attributes_say():
    """Runs measures.js in chromium on a page served under the same policy."""
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    from tests.e2e.test_browser_generate import launch

    static = Path(settings.BASE_DIR) / "static"
    page_html = """<!doctype html><html><head>
      <script src="/htmx.js"></script><script src="/measures.js" defer></script></head><body>
      <div class="bar" data-progress="37"></div><div data-progress="250"></div>
      <span data-crop-box="10 20 30.5 40"></span><span data-score="0.42"></span>
      <div style="width: 7px" id="inline"></div></body></html>"""
    files = {"/": (page_html, "text/html"),
             "/htmx.js": ((static / "vendor/htmx/htmx.min.js").read_text(), "text/javascript"),
             "/measures.js": ((static / "js/measures.js").read_text(), "text/javascript")}
    header = "default-src 'self'; script-src 'self'; style-src 'self'"
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page()
        page.route("http://csp.test/**", lambda route: route.fulfill(
            body=files[route.request.url.removeprefix("http://csp.test")][0],
            content_type=files[route.request.url.removeprefix("http://csp.test")][1],
            headers={"Content-Security-Policy": header},
        ))
        page.goto("http://csp.test/")
        page.wait_for_function("document.querySelector('.bar').style.width !== ''")
        styles = page.evaluate("""() => Array.from(
            document.querySelectorAll('[data-progress], [data-crop-box], [data-score], #inline'),
            (el) => el.style.cssText)""")
        browser.close()
    assert styles == [
        "width: 37%;", "width: 100%;",
        "left: 10%; top: 20%; width: 30.5%; height: 40%;",
        "--score: 0.42;",
        "",  # the policy blocked the style attribute
    ]
