"""Errors look like the studio's, not Django's (issue #15 item 7): a product 404, 403,
expired-form 403 and 500, each in the site's layout; the 500 is rendered without the
database and names the request's id, which its log lines carry."""

from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import include, path, reverse

from studio.urls import handler500  # noqa: F401 (this test's URLconf is the studio's, plus a crash)
from tests.base import StudioTestCase


def crash(request):
    raise RuntimeError("an error nobody expected")


urlpatterns = [path("crash/", crash), path("", include("studio.urls"))]


class ErrorPagesTestCase(StudioTestCase):
    def assert_product_page(self, response, status, title):
        self.assertContains(response, f"<title>{title} · Studio</title>", status_code=status,
                            html=False)
        self.assertContains(response, 'class="empty error-page"', status_code=status)
        self.assertContains(response, "/static/css/studio.css", status_code=status)

    def test_an_unknown_address_is_the_products_404(self):
        response = self.client.get("/no-such-page/")
        self.assert_product_page(response, 404, "Page not found")
        self.assertContains(response, reverse("login"), status_code=404)

    def test_a_signed_in_user_gets_the_404_with_the_nav(self):
        self.client.force_login(self.editor)
        response = self.client.get("/no-such-page/")
        self.assert_product_page(response, 404, "Page not found")
        self.assertContains(response, 'aria-label="Main"', status_code=404)
        self.assertContains(response, "Back to your teams", status_code=404)

    def test_another_teams_project_is_the_products_404(self):
        self.client.force_login(self.outsider)
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assert_product_page(response, 404, "Page not found")
        self.assertNotContains(response, self.project.name, status_code=404)

    def test_a_refused_role_is_the_products_403_with_the_reason(self):
        self.client.force_login(self.viewer)
        response = self.client.post(reverse("job_create", args=[self.project.pk]),
                                     {"prompt": "a fox"})
        self.assert_product_page(response, 403, "Not allowed")
        self.assertContains(response, "Your role does not allow this", status_code=403)

    def test_a_form_from_an_old_session_is_the_products_expired_page(self):
        client = Client(enforce_csrf_checks=True)
        response = client.post(reverse("login"), {"username": "carol", "password": "x"})
        self.assert_product_page(response, 403, "Page expired")
        self.assertContains(response, "was not saved", status_code=403)
        self.assertNotContains(response, "CSRF verification failed", status_code=403)


@override_settings(ROOT_URLCONF=__name__)
class ServerErrorTestCase(StudioTestCase):
    def test_a_crash_is_the_products_500_without_the_database(self):
        client = Client(raise_request_exception=False)
        client.force_login(self.editor)
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/crash/", headers={"X-Request-ID": "req-1234"})
        self.assertEqual(response.status_code, 500)
        self.assertEqual(len(queries), 0, [q["sql"] for q in queries])
        self.assertContains(response, "<title>Something went wrong · Studio</title>",
                            status_code=500)
        self.assertContains(response, "Error reference: <code>req-1234</code>", status_code=500)
        self.assertNotContains(response, "an error nobody expected", status_code=500)
        # Who is signed in is not looked up: the page is the same for everyone.
        self.assertNotContains(response, self.editor.username, status_code=500)
