"""Issue #19: passwords are hashed with Argon2 at Django's own parameters (cheaper per log-in
than PBKDF2 at Django's iterations, and memory-hard), older PBKDF2 hashes still log in, and a
process never hashes more passwords at once than it has cores (each holds 100 MiB)."""

import threading
from unittest import mock

from django.contrib.auth import hashers as django_hashers
from django.contrib.auth.hashers import check_password, make_password
from django.test import SimpleTestCase, override_settings
from django.urls import reverse

from studio import settings as production
from studio.accounts import hashers
from studio.accounts.models import User
from tests.base import StudioTestCase


@override_settings(PASSWORD_HASHERS=production.PASSWORD_HASHERS)
class PasswordHasherTestCase(StudioTestCase):
    def test_new_passwords_are_argon2id_at_djangos_parameters(self):
        encoded = make_password("a new password")
        self.assertTrue(encoded.startswith("argon2$argon2id$v=19$m=102400,t=2,p=8$"), encoded)
        self.assertTrue(check_password("a new password", encoded))
        self.assertFalse(check_password("another password", encoded))

    def test_a_pbkdf2_password_logs_in_and_is_rehashed_with_argon2(self):
        alice = User.objects.get(username="alice")
        alice.password = django_hashers.PBKDF2PasswordHasher().encode(
            self.password, django_hashers.PBKDF2PasswordHasher().salt()
        )
        alice.save(update_fields=["password"])
        response = self.client.post(reverse("login"), {"username": "alice",
                                                       "password": self.password})
        self.assertRedirects(response, reverse("dashboard"), fetch_redirect_response=False)
        alice.refresh_from_db()
        self.assertTrue(alice.password.startswith("argon2$argon2id$"), alice.password)

    def test_a_wrong_password_does_not_log_in(self):
        response = self.client.post(reverse("login"), {"username": "alice", "password": "nope"})
        self.assertContains(response, "Please enter a correct username and password")


class HashesAtOnceTestCase(SimpleTestCase):
    def test_no_more_hashes_run_at_once_than_there_are_cores(self):
        running, most = [0], [0]
        lock, entered, release = threading.Lock(), threading.Semaphore(0), threading.Event()

        def slow_verify(hasher, password, encoded):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            entered.release()
            release.wait(timeout=30)
            with lock:
                running[0] -= 1
            return True

        hasher = hashers.Argon2PasswordHasher()
        callers = [
            threading.Thread(target=hasher.verify, args=("password", "argon2$unused"))
            for _ in range(hashers.HASHES_AT_ONCE + 2)
        ]
        with mock.patch.object(django_hashers.Argon2PasswordHasher, "verify", slow_verify):
            for caller in callers:
                caller.start()
            for _ in range(hashers.HASHES_AT_ONCE):
                self.assertTrue(entered.acquire(timeout=30))
            # The rest wait for a turn: none of them gets in while the first ones run.
            self.assertFalse(entered.acquire(timeout=0.3))
            release.set()
            for caller in callers:
                caller.join(timeout=30)
        self.assertEqual(most[0], hashers.HASHES_AT_ONCE)
        self.assertFalse([caller for caller in callers if caller.is_alive()])
