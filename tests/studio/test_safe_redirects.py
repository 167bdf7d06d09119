"""Every `next` redirect target goes through Django's url_has_allowed_host_and_scheme:
another site, a scheme-relative URL or a javascript: URL falls back to the page's own
default, never a redirect away nor an error page."""

from urllib.parse import quote

from django.urls import reverse

from tests.base import StudioTestCase, make_job

HOSTILE = [
    "https://evil.example/",
    "//evil.example/",
    "javascript:alert(1)",
    "JavaScript:alert(document.cookie)",
    "http:\\\\evil.example",
    "/\\evil.example",
]


class SafeRedirectTests(StudioTestCase):
    def assert_falls_back(self, response, fallback):
        self.assertEqual(response.status_code, 302)
        self.assertEqual(response["Location"], fallback)

    def test_signup_follows_a_local_next(self):
        data = {"username": "newbie", "email": "newbie@example.org",
                "password1": "a long passphrase 42", "password2": "a long passphrase 42"}
        response = self.client.post(reverse("signup") + "?next=/explore/", data)
        self.assertEqual(response["Location"], "/explore/")

    def test_signup_refuses_other_targets(self):
        for number, target in enumerate(HOSTILE):
            with self.subTest(target=target):
                self.client.logout()
                data = {"username": f"newbie{number}", "email": f"n{number}@example.org",
                        "password1": "a long passphrase 42", "password2": "a long passphrase 42"}
                url = reverse("signup") + "?next=" + quote(target)
                self.assert_falls_back(self.client.post(url, data), reverse("dashboard"))

    def test_login_refuses_other_targets(self):
        for target in HOSTILE:
            with self.subTest(target=target):
                self.client.logout()
                response = self.client.post(
                    reverse("login"),
                    {"username": "alice", "password": self.password, "next": target},
                )
                self.assert_falls_back(response, reverse("dashboard"))

    def test_logout_refuses_other_targets(self):
        for target in HOSTILE:
            with self.subTest(target=target):
                self.client.force_login(self.owner)
                response = self.client.post(reverse("logout"), {"next": target})
                self.assert_falls_back(response, reverse("login"))

    def test_a_report_goes_back_only_to_this_site(self):
        self.client.force_login(self.editor)
        url = reverse("moderation_report", args=["user", self.owner.pk])
        for target in HOSTILE:
            with self.subTest(target=target):
                page = self.client.get(url + "?next=" + quote(target))
                self.assertEqual(page.status_code, 200)
                self.assertEqual(page.context["back"], "/")
        response = self.client.post(
            url + "?next=" + quote("javascript:alert(1)"), {"reason": "spam", "note": ""}
        )
        self.assert_falls_back(response, "/")

    def test_a_favourite_goes_back_only_to_this_site(self):
        self.client.force_login(self.editor)
        job = make_job(self.project, self.editor, self.model)
        for target in HOSTILE:
            with self.subTest(target=target):
                response = self.client.post(
                    reverse("prompt_favourite", args=[job.pk]), {"next": target}
                )
                self.assert_falls_back(response, reverse("prompt_history"))

    def test_adding_to_a_collection_goes_back_only_to_this_site(self):
        self.client.force_login(self.editor)
        for target in HOSTILE:
            with self.subTest(target=target):
                response = self.client.post(
                    reverse("collection_add"), {"collection": "", "next": target}
                )
                self.assert_falls_back(response, "/")

    def test_an_https_page_never_sends_back_to_plain_http(self):
        self.client.force_login(self.editor)
        response = self.client.post(
            reverse("collection_add"),
            {"collection": "", "next": "http://testserver/explore/"}, secure=True,
        )
        self.assert_falls_back(response, "/")
