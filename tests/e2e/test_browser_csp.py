"""The Content-Security-Policy in a real browser against the real server (tests/studio/test_csp.py
checks the header and the templates)."""

import os
import re

import pytest
from django.urls import reverse

from tests.base import make_image, make_job
from tests.e2e.test_browser_generate import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


def test_pages_break_no_rule_of_the_policy_in_a_browser(studio_processes):
    """Chromium reports every script, style or connection the policy blocks: the pages with
    scripts, measures and a live socket report none, and their socket connects."""
    from playwright.sync_api import expect, sync_playwright

    from generation.models import DiffusionModel, JobStatus
    from studio.accounts.models import Membership, Project, Role, Team, User
    from tests.e2e.test_browser_generate import launch
    from tests.subject_builders import make_run, make_subject

    base_url = studio_processes["base_url"]
    user = User.objects.create_superuser("csp", "csp@example.org", "a-long-test-password-3")
    team = Team.objects.create(name="Policy team")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="Policies")
    model = DiffusionModel.objects.create(name="tiny-sd15", source="/models/tiny-sd15")
    make_job(project, user, model, status=JobStatus.RUNNING, progress_step=2)
    image = make_image(make_job(project, user, model, status=JobStatus.FINISHED))
    subject = make_subject(team, user)
    run = make_run(subject, project, user, model)
    pages = [project.get_absolute_url(), image.get_absolute_url(), subject.get_absolute_url(),
             run.get_absolute_url(), reverse("lora_upload", args=[team.pk]),
             reverse("moderation_queue"), reverse("explore"), reverse("password_change")]

    violations = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page()
        page.on("console", lambda message: violations.append((page.url, message.text))
                if "Content Security Policy" in message.text else None)
        page.goto(base_url + reverse("login"))
        page.get_by_label("Username").fill("csp")
        page.get_by_label("Password").fill("a-long-test-password-3")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(base_url + "/")
        for path in pages:
            response = page.goto(base_url + path)
            assert "script-src 'self'" in response.headers["content-security-policy"]
            page.wait_for_load_state("networkidle")
            if path == project.get_absolute_url():
                expect(page.locator("#live-dot")).to_have_class(re.compile("is-connected"))
                bar = page.locator("#job-list [data-status=running] .progress-bar")
                assert bar.evaluate("el => el.style.width") == "50%"
            if path == subject.get_absolute_url():
                box = page.locator(".subject-crop").first
                assert box.evaluate("el => el.style.width").endswith("%")
        browser.close()
    assert violations == []
