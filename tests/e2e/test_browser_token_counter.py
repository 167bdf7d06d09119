"""A person's view of the prompt tools: the token counters under the prompt boxes update as
they type ("2/75", then "…/150" past a chunk), a style picked counts with the prompt, and the
team's style library. Screenshots land in test-artifacts/."""

import os

import pytest

from generation.models import DiffusionModel, SourceKind
from generation.styles.models import Style
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.e2e.test_browser_generate import ARTIFACTS, CHROMIUM, launch

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


def test_the_counters_follow_the_typing(studio_processes, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from gpu_workers.tiny_models import tiny_clip_tokenizer

    # Only the tokenizer's files: the counter reads nothing else, and nothing is generated.
    tiny_clip_tokenizer(tmp_path / "tiny" / "tokenizer")
    base_url = studio_processes["base_url"]
    user = User.objects.create_user("ann", "ann@example.org", "a-long-test-password-1")
    team = Team.objects.create(name="Poster team")
    Membership.objects.create(team=team, user=user, role=Role.EDITOR)
    project = Project.objects.create(team=team, name="Spring posters")
    DiffusionModel.objects.create(name="tiny-sd15", source_kind=SourceKind.FOLDER,
                                  source=str(tmp_path / "tiny"))
    Style.objects.create(team=team, name="Film", prompt="analog photo of {prompt}, grain",
                         negative_prompt="digital")
    Style.objects.create(team=team, name="Ink", prompt="ink drawing")
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(base_url + "/login/")
        page.get_by_label("Username").fill("ann")
        page.get_by_label("Password").fill("a-long-test-password-1")
        page.get_by_role("button", name="Log in").click()
        page.goto(base_url + project.get_absolute_url())
        prompt_count = page.locator(".token-counter").nth(0)
        negative_count = page.locator(".token-counter").nth(1)
        # The server's first count imports transformers: seconds on a busy machine.
        expect(prompt_count).to_contain_text("0/75", timeout=60_000)
        expect(negative_count).to_contain_text("0/75", timeout=60_000)

        page.get_by_label("Prompt", exact=True).press_sequentially("a cat", delay=20)
        expect(prompt_count).to_contain_text("2/75")
        page.get_by_label("Prompt", exact=True).fill(" ".join(["w1"] * 50))
        page.get_by_label("Prompt", exact=True).press("End")
        page.get_by_label("Prompt", exact=True).press_sequentially(" w2", delay=20)
        expect(prompt_count).to_contain_text("/150")
        page.get_by_label("Prompt", exact=True).fill("")
        page.get_by_label("Prompt", exact=True).press_sequentially("a cat", delay=20)
        expect(prompt_count).to_contain_text("2/75")

        page.get_by_label("Film").check()
        expect(prompt_count).not_to_contain_text("2/75")
        expect(negative_count).not_to_contain_text("0/75")
        page.locator("#generate-form").screenshot(path=str(ARTIFACTS / "token-counter.png"))

        page.goto(base_url + f"/teams/{team.pk}/styles/")
        page.screenshot(path=str(ARTIFACTS / "style-library.png"), full_page=True)
        browser.close()
