"""Password change (signed in) and reset by email, through Django's own views; mail goes
through EMAIL_BACKEND (the console in the embedded mode, locmem in tests)."""

import os
import re
import subprocess
import sys

from django.core import mail
from django.test import override_settings
from django.urls import reverse

from studio.accounts.models import User
from tests.base import StudioTestCase

NEW_PASSWORD = "another long passphrase 7"


class PasswordChangeTests(StudioTestCase):
    def test_a_signed_in_user_changes_their_password_and_stays_signed_in(self):
        self.client.force_login(self.editor)
        page = self.client.get(reverse("password_change"))
        self.assertContains(page, "Change your password")
        response = self.client.post(reverse("password_change"), {
            "old_password": self.password,
            "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD,
        })
        self.assertRedirects(response, reverse("password_change_done"))
        self.editor.refresh_from_db()
        self.assertTrue(self.editor.check_password(NEW_PASSWORD))
        self.assertEqual(self.client.get(reverse("dashboard")).status_code, 200)

    def test_a_wrong_old_password_changes_nothing_and_names_the_field(self):
        self.client.force_login(self.editor)
        response = self.client.post(reverse("password_change"), {
            "old_password": "not it",
            "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD,
        })
        self.assertEqual(response.status_code, 200)
        self.assertIn("old_password", response.context["form"].errors)
        self.editor.refresh_from_db()
        self.assertTrue(self.editor.check_password(self.password))

    def test_signed_out_visitors_are_sent_to_log_in(self):
        response = self.client.get(reverse("password_change"))
        self.assertRedirects(
            response, reverse("login") + "?next=" + reverse("password_change"),
            fetch_redirect_response=False,
        )

    def test_the_top_bar_links_to_it(self):
        self.client.force_login(self.editor)
        self.assertContains(self.client.get(reverse("dashboard")), reverse("password_change"))


class PasswordResetTests(StudioTestCase):
    def request_reset(self, email):
        return self.client.post(reverse("password_reset"), {"email": email})

    def test_the_login_page_links_to_it(self):
        self.assertContains(self.client.get(reverse("login")), reverse("password_reset"))

    def test_a_reset_link_is_mailed_and_sets_a_new_password_once(self):
        response = self.request_reset("carol@example.org")
        self.assertRedirects(response, reverse("password_reset_done"))
        self.assertEqual(len(mail.outbox), 1)
        message = mail.outbox[0]
        self.assertEqual(message.to, ["carol@example.org"])
        self.assertEqual(message.subject, "Reset your Studio password")
        link = re.search(r"http://testserver(/password-reset/\S+/\S+/)", message.body).group(1)

        form_page = self.client.get(link, follow=True)
        self.assertContains(form_page, "Set a new password")
        set_url = form_page.redirect_chain[-1][0]
        response = self.client.post(
            set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
        )
        self.assertRedirects(response, reverse("password_reset_complete"))
        self.assertTrue(User.objects.get(pk=self.editor.pk).check_password(NEW_PASSWORD))
        # The link is spent.
        self.assertContains(self.client.get(link, follow=True), "This link no longer works")

    def test_an_unknown_address_gets_the_same_answer_and_no_mail(self):
        response = self.request_reset("nobody@example.org")
        self.assertRedirects(response, reverse("password_reset_done"))
        self.assertEqual(mail.outbox, [])

    def test_a_forged_link_sets_nothing(self):
        page = self.client.get("/password-reset/MQ/forged-token/", follow=True)
        self.assertContains(page, "This link no longer works")


class EmailBackendTests(StudioTestCase):
    @override_settings(EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend")
    def test_the_console_backend_writes_the_mail_to_the_output(self):
        from io import StringIO
        from unittest import mock

        with mock.patch("sys.stdout", new_callable=StringIO) as output:
            self.request_reset()
        self.assertIn("Reset your Studio password", output.getvalue())

    def request_reset(self):
        self.client.post(reverse("password_reset"), {"email": "carol@example.org"})

    def test_the_embedded_mode_mails_to_the_console_and_the_distributed_mode_by_smtp(self):
        def backend(**env):
            clean = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "EMAIL_BACKEND")}
            code = "from studio import settings; print(settings.EMAIL_BACKEND)"
            result = subprocess.run(
                [sys.executable, "-c", code], env={**clean, "DEBUG": "1", **env},
                capture_output=True, text=True, timeout=60, check=True,
            )
            return result.stdout.strip()

        self.assertEqual(backend(), "django.core.mail.backends.console.EmailBackend")
        smtp = backend(REDIS_URL="redis://127.0.0.1:1/0")
        self.assertEqual(smtp, "django.core.mail.backends.smtp.EmailBackend")


@override_settings(STUDIO_PASSWORD_RESETS_PER_HOUR_PER_IP=2)
class PasswordResetRateTests(StudioTestCase):
    def test_one_address_asks_for_at_most_the_limit_of_mails_per_hour(self):
        url = reverse("password_reset")
        for _ in range(2):
            self.client.post(url, {"email": "carol@example.org"}, REMOTE_ADDR="10.2.2.2")
        response = self.client.post(url, {"email": "carol@example.org"}, REMOTE_ADDR="10.2.2.2")
        self.assertEqual(response.status_code, 429)
        self.assertContains(response, "password reset requests", status_code=429)
        self.assertEqual(len(mail.outbox), 2)
        # Showing the form is not a request; another address is not held up.
        self.assertEqual(self.client.get(url, REMOTE_ADDR="10.2.2.2").status_code, 200)
        self.client.post(url, {"email": "carol@example.org"}, REMOTE_ADDR="10.2.2.3")
        self.assertEqual(len(mail.outbox), 3)
