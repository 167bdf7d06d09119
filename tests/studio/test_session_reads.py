"""Sessions come from the cache (issue #19): a signed-in page reads no session row, and a
session the cache lost is still found in the database."""

from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.base import StudioTestCase


class SessionReadTests(StudioTestCase):
    def session_queries(self):
        with CaptureQueriesContext(connection) as queries:
            response = self.client.get(reverse("dashboard"))
        self.assertEqual(response.status_code, 200)
        return [query["sql"] for query in queries.captured_queries
                if "django_session" in query["sql"]]

    def test_a_signed_in_page_reads_its_session_from_the_cache(self):
        self.client.login(username="carol", password=self.password)
        self.assertEqual(self.session_queries(), [])

    def test_a_session_the_cache_lost_is_read_from_the_database(self):
        self.client.login(username="carol", password=self.password)
        cache.clear()
        self.assertEqual(len(self.session_queries()), 1)
        self.assertEqual(self.session_queries(), [])  # cached again
