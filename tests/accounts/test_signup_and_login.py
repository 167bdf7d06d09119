from unittest import mock

from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from studio import settings as production
from studio.accounts.hashers import Argon2PasswordHasher
from studio.accounts.models import User
from tests.base import StudioTestCase


class SignupTestCase(StudioTestCase):
    def test_signup_creates_a_user_and_logs_in(self):
        response = self.client.post(reverse("signup"), {
            "username": "frank", "email": "frank@example.org",
            "password1": "a-long-enough-password", "password2": "a-long-enough-password",
        })
        self.assertRedirects(response, reverse("dashboard"))
        self.assertTrue(User.objects.filter(username="frank").exists())
        self.assertContains(self.client.get(reverse("dashboard")), "Start with a team")

    def test_signup_refuses_a_taken_name_and_mismatched_passwords(self):
        response = self.client.post(reverse("signup"), {
            "username": "alice", "password1": "a-long-enough-password", "password2": "other-one-x",
        })
        self.assertEqual(response.status_code, 200)
        self.assertIn("username", response.context["form"].errors)
        self.assertIn("password2", response.context["form"].errors)
        self.assertEqual(User.objects.filter(username="alice").count(), 1)


class LoginLogoutTestCase(StudioTestCase):
    def test_log_in_and_out(self):
        response = self.client.post(reverse("login"), {"username": "alice",
                                                       "password": self.password})
        self.assertRedirects(response, reverse("dashboard"))
        self.assertContains(self.client.get(reverse("dashboard")), "Alpha")
        self.assertRedirects(self.client.post(reverse("logout")), reverse("login"))
        self.assertEqual(self.client.get(reverse("dashboard")).status_code, 302)

    @override_settings(PASSWORD_HASHERS=production.PASSWORD_HASHERS)
    def test_a_log_in_hashes_the_password_once(self):
        """Issue #19: the hasher at full strength is a log-in's cost; the throttle, the
        session and the signals add no second hash, and a password hashed as production
        hashes it is not rewritten."""
        alice = User.objects.get(username="alice")
        alice.set_password(self.password)
        alice.save(update_fields=["password"])
        verify = Argon2PasswordHasher.verify
        with mock.patch.object(Argon2PasswordHasher, "verify", autospec=True,
                               side_effect=verify) as hashed:
            with CaptureQueriesContext(connection) as queries:
                response = self.client.post(reverse("login"), {"username": "alice",
                                                               "password": self.password})
        self.assertRedirects(response, reverse("dashboard"), fetch_redirect_response=False)
        self.assertEqual(hashed.call_count, 1)
        self.assertFalse([query for query in queries.captured_queries
                          if '"password" =' in query["sql"]])

    def test_wrong_password_says_so(self):
        response = self.client.post(reverse("login"), {"username": "alice", "password": "nope"})
        self.assertContains(response, "Please enter a correct username and password")

    def test_dashboard_lists_only_my_teams(self):
        self.client.force_login(self.outsider)
        response = self.client.get(reverse("dashboard"))
        self.assertContains(response, "Elsewhere")
        self.assertNotContains(response, "Alpha")
