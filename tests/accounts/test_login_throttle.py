"""Failed log-ins lock the account and, separately, the address (django-axes, counted in
the cache) with a 429 saying when to retry."""

import os
import uuid

import pytest
import redis
from axes.handlers.proxy import AxesProxyHandler
from django.test import override_settings
from django.urls import reverse

from tests.base import StudioTestCase


@override_settings(AXES_FAILURE_LIMIT=3, STUDIO_LOGIN_LOCKOUT_MINUTES=15, AXES_COOLOFF_TIME=0.25)
class LoginThrottleTests(StudioTestCase):
    def log_in(self, username, password, address="10.0.0.1", **headers):
        return self.client.post(
            reverse("login"), {"username": username, "password": password},
            REMOTE_ADDR=address, headers=headers,
        )

    def fail_log_ins(self, times, username="alice", address="10.0.0.1"):
        """Fail `times` times; the last failure is the one that locks."""
        for attempt in range(times):
            response = self.log_in(username, "wrong", address)
            self.assertEqual(response.status_code, 429 if attempt == 2 else 200)

    def test_an_account_that_failed_too_often_is_locked_with_a_page_saying_when(self):
        self.fail_log_ins(3)
        response = self.log_in("alice", self.password)
        self.assertEqual(response.status_code, 429)
        self.assertEqual(response["Retry-After"], "900")
        self.assertContains(response, "Too many failed log-ins", status_code=429)
        self.assertContains(response, "Try again in 15 minutes", status_code=429)
        self.assertNotIn("_auth_user_id", self.client.session)

    def test_the_locked_account_stays_locked_from_another_address(self):
        self.fail_log_ins(3, address="10.0.0.1")
        self.assertEqual(self.log_in("alice", self.password, "10.9.9.9").status_code, 429)
        # Other accounts from that other address are not held up.
        self.assertEqual(self.log_in("bob", self.password, "10.9.9.9").status_code, 302)

    def test_an_address_failing_on_many_accounts_is_locked_for_every_account(self):
        for name in ("nobody1", "nobody2", "nobody3"):
            self.log_in(name, "wrong", "10.0.0.7")
        self.assertEqual(self.log_in("bob", self.password, "10.0.0.7").status_code, 429)
        self.assertEqual(self.log_in("bob", self.password, "10.0.0.8").status_code, 302)

    def test_a_successful_log_in_clears_the_failures(self):
        self.fail_log_ins(2)
        self.assertEqual(self.log_in("alice", self.password).status_code, 302)
        self.client.logout()
        self.fail_log_ins(2)
        self.assertEqual(self.log_in("alice", self.password).status_code, 302)

    def test_a_json_client_gets_json(self):
        self.fail_log_ins(3)
        response = self.log_in("alice", self.password, Accept="application/json")
        self.assertEqual(response.status_code, 429)
        self.assertEqual(response.json()["retry_after"], 900)
        self.assertIn("Too many failed log-ins", response.json()["detail"])


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (shared Redis)")
class LoginThrottleAcrossWebNodesTests(StudioTestCase):
    """With REDIS_URL the counts live in Redis, which every web node shares: the lock is
    there, and nowhere else (gone from Redis, it is gone)."""

    def setUp(self):
        self.prefix = f"test-login-throttle-{uuid.uuid4().hex}"
        redis_cache = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            "KEY_PREFIX": self.prefix,
        }
        self.settings_override = override_settings(
            CACHES={"default": redis_cache}, AXES_FAILURE_LIMIT=2
        )
        self.settings_override.enable()
        # django-axes keeps its handler (and so its cache) from the first use on.
        AxesProxyHandler.get_implementation(force=True)
        self.redis = redis.Redis.from_url(os.environ["REDIS_URL"])

    def tearDown(self):
        self.delete_our_keys()
        self.settings_override.disable()
        AxesProxyHandler.get_implementation(force=True)

    def delete_our_keys(self):
        # Only this test's keys: the shared Redis is never flushed.
        for key in self.redis.scan_iter(match=f"{self.prefix}:*"):
            self.redis.delete(key)

    def log_in(self, password):
        return self.client.post(reverse("login"), {"username": "alice", "password": password})

    def test_the_lock_is_kept_in_redis(self):
        self.log_in("wrong")
        self.assertEqual(self.log_in("wrong").status_code, 429)
        self.assertEqual(self.log_in(self.password).status_code, 429)
        self.assertTrue(list(self.redis.scan_iter(match=f"{self.prefix}:*")))
        self.delete_our_keys()
        self.assertEqual(self.log_in(self.password).status_code, 302)
