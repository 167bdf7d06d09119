"""While the database can't be reached the web tier answers 503 with Retry-After and a
page (or JSON) saying to try again, never a 500 (issue #18)."""

import socket
from contextlib import contextmanager

import pytest
from django.db import connection
from django.urls import reverse

from studio.accounts.models import User

pytestmark = pytest.mark.django_db(transaction=True)


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe is closed


@contextmanager
def database_unreachable():
    """The default connection pointed at a database that isn't there: a closed port for
    PostgreSQL, a file in a folder that doesn't exist for SQLite."""
    original = connection.settings_dict
    if connection.vendor == "sqlite":
        unreachable = {**original, "NAME": "/nonexistent-folder/studio.sqlite3"}
    else:
        unreachable = {**original, "HOST": "127.0.0.1", "PORT": closed_port()}
    connection.close()
    connection.settings_dict = unreachable
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict = original


@pytest.fixture
def user():
    return User.objects.create_user("ann", "ann@example.org", "correct horse battery")


def assert_retry_page(response):
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "Back in a moment" in page
    assert "reach its database right now" in page
    assert "Log out" not in page  # it renders without a user


def test_a_signed_in_page_answers_503_with_a_retry_page(client, user):
    client.force_login(user)
    with database_unreachable():
        response = client.get(reverse("dashboard"))
    assert_retry_page(response)
    assert 'href="/"' in response.content.decode()  # Try again, on the same page


def test_logging_in_answers_503_with_a_retry_page(client, user):
    with database_unreachable():
        page = client.get(reverse("login"))
        response = client.post(
            reverse("login"), {"username": "ann", "password": "correct horse battery"}
        )
    assert page.status_code == 200  # the form itself needs no database
    assert_retry_page(response)
    assert "What you sent was not saved" in response.content.decode()


def test_clients_that_accept_json_get_json(client, user):
    client.force_login(user)
    with database_unreachable():
        response = client.get(reverse("dashboard"), headers={"Accept": "application/json"})
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.json() == {
        "error": "database_unavailable",
        "detail": "The studio can't reach its database right now. Nothing was changed; try "
        "again shortly.",
        "retry_after": 30,
    }


def test_the_studio_answers_again_once_the_database_is_back(client, user):
    client.force_login(user)
    with database_unreachable():
        assert client.get(reverse("dashboard")).status_code == 503
    assert client.get(reverse("dashboard")).status_code == 200
