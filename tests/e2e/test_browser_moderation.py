"""A moderator works the queue in a browser: two images a scan flagged wait blurred; one
is revealed, the other approved with the keyboard (k, a), the revealed one removed with a
reason from its buttons. Its owner reads why in her notifications and appeals. No worker
is needed: the scans run in the test."""

import os
import re
from unittest import mock

import pytest

from gallery.models import Image, ModerationStatus
from gallery.thumbnails import image_thumbnails_make
from generation.models import DiffusionModel
from studio.accounts.models import Membership, Project, Role, Team, User
from studio.moderation.models import AuditEntry, Case, CaseStatus, Moderator, Notification
from studio.moderation.scanning import image_scan
from tests.e2e.test_browser_generate import ARTIFACTS, CHROMIUM, launch
from tests.moderation_helpers import make_textured_image, scanning_with

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]

PASSWORD = "a-long-test-password-7"


def flagged_image(project, user, model, seed, prompt):
    image = make_textured_image(project, user, model, seed=seed, prompt=prompt)
    image_thumbnails_make(image_id=image.pk)
    settings_, scores = scanning_with(0.64)
    with settings_, scores, mock.patch("studio.moderation.scanning.publish"):
        image_scan(image_id=image.pk)
    return image


def test_a_moderator_approves_and_removes_from_the_queue(studio_processes):
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    owner = User.objects.create_user("nia", "nia@example.org", PASSWORD)
    moderator = User.objects.create_user("mo", "mo@example.org", PASSWORD)
    team = Team.objects.create(name="Poster studio")
    Membership.objects.create(team=team, user=owner, role=Role.EDITOR)
    Moderator.objects.create(user=moderator)
    project = Project.objects.create(team=team, name="Posters")
    model = DiffusionModel.objects.create(name="tiny-sd15", source="/models/tiny-sd15")
    fine = flagged_image(project, owner, model, 1, "a beach poster in bold colours")
    bad = flagged_image(project, owner, model, 2, "a poster copied from a stock site")
    fine_case = Case.objects.get(subject_image_id=fine.pk)
    bad_case = Case.objects.get(subject_image_id=bad.pk)
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base_url + "/login/")
        page.get_by_label("Username").fill("mo")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.goto(base_url + "/moderation/")

        cards = page.locator(".mod-case")
        expect(cards).to_have_count(2)
        first = page.locator(f'.mod-case[data-case-id="{fine_case.pk}"]')
        second = page.locator(f'.mod-case[data-case-id="{bad_case.pk}"]')
        expect(first.locator(".mod-media")).to_have_class(re.compile(r"\bis-blurred\b"))
        expect(first.locator(".mod-scan")).to_contain_text("unsafe")
        expect(first.locator(".mod-scan")).to_contain_text("0.64")
        first.locator("img").evaluate("img => img.decode()")
        assert first.locator("img").evaluate("img => img.naturalWidth") > 0

        # Reveal the second, then look at the queue as a moderator sees it.
        second.get_by_role("button", name="Reveal").click()
        expect(second.locator(".mod-media")).not_to_have_class(re.compile(r"\bis-blurred\b"))
        expect(second.get_by_role("button", name="Hide")).to_be_visible()
        page.wait_for_timeout(200)  # the blur transition
        page.screenshot(path=str(ARTIFACTS / "moderation-queue.png"), full_page=True)

        # Keyboard: the revealed case has the focus; k moves up to the oldest, a approves it.
        expect(second).to_have_class(re.compile(r"\bis-focused\b"))
        page.keyboard.press("k")
        expect(first).to_have_class(re.compile(r"\bis-focused\b"))
        page.keyboard.press("a")
        expect(page.locator(".alert-success")).to_contain_text(f"Case {fine_case.pk}: approved")

        # The other is removed with a reason, from its buttons.
        second = page.locator(f'.mod-case[data-case-id="{bad_case.pk}"]')
        second.get_by_label("Reason").select_option("tos")
        second.get_by_placeholder("Note (optional)").fill("Watermark of a stock photo site")
        second.get_by_role("button", name="Remove").click()
        expect(page.locator(".alert-success")).to_contain_text(f"Case {bad_case.pk}: removed")
        expect(page.locator(".mod-case")).to_have_count(0)
        expect(page.locator(".mod-cases")).to_contain_text("Nothing waits for a decision")
        page.screenshot(path=str(ARTIFACTS / "moderation-queue-done.png"), full_page=True)

        # The owner reads why and appeals from the removal's page.
        owner_page = browser.new_page(viewport={"width": 1280, "height": 800})
        owner_page.goto(base_url + "/login/")
        owner_page.get_by_label("Username").fill("nia")
        owner_page.get_by_label("Password").fill(PASSWORD)
        owner_page.get_by_role("button", name="Log in").click()
        owner_page.get_by_role("link", name="Notifications: 1 unread").click()
        expect(owner_page.locator(".mod-note")).to_contain_text("Watermark of a stock photo site")
        owner_page.get_by_role("link", name="Details").click()
        expect(owner_page.locator("h1")).to_contain_text("Removed: image #")
        owner_page.get_by_label("Why should it come back?").fill("I licensed this photo.")
        owner_page.screenshot(path=str(ARTIFACTS / "moderation-removal-appeal.png"))
        owner_page.get_by_role("button", name="Send appeal").click()
        expect(owner_page.locator(".alert-success")).to_contain_text("appeal is with")
        browser.close()

    fine.refresh_from_db()
    bad.refresh_from_db()
    assert fine.moderation_status == ModerationStatus.PASSED
    assert bad.moderation_status == ModerationStatus.FAILED
    assert Image.objects.get(pk=bad.pk).visibility == "project"
    assert {case.status for case in Case.objects.exclude(kind="appeal")} == {CaseStatus.RESOLVED}
    assert AuditEntry.objects.filter(action="image.approve", actor=moderator).exists()
    assert AuditEntry.objects.filter(action="image.remove", actor=moderator).exists()
    note = Notification.objects.get(user=owner)
    assert "Watermark of a stock photo site" in note.message
    appeal = Case.objects.get(kind="appeal")
    assert (appeal.subject_image_id, appeal.summary) == (bad.pk, "I licensed this photo.")
