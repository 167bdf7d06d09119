"""Prompt history: every prompt a user ran, across projects and per project; search,
grouping of repeated runs, the images each prompt made, reuse in one click."""

import html
import re
from datetime import timedelta
from unittest import skipUnless

from django.db import connection
from django.urls import reverse
from django.utils import timezone

from generation import prompt_history
from generation.models import JobStatus, PromptFavourite
from studio.accounts.models import Membership, Project, Role
from tests.base import StudioTestCase, make_image, make_job

HISTORY = reverse("prompt_history")
HOSTILE_QUERIES = [
    '"',
    "'",
    '"unbalanced quote',
    "a & b | !c",
    "!!!",
    "&|!():*<>",
    "lighthouse:* & !sea",
    "'; DROP TABLE generation_generationjob; --",
    "1' OR '1'='1",
    "%_\\",
    "<script>alert(1)</script>",
    "\x00nul\x00",
    "tab\there\nnewline",
    "(((",
    "ünïcödé 日本語 emoji 🚀",
    "a" * 5000,
    " ".join(["word"] * 500),
    "x " * 3000,
]


def project_history(project):
    return reverse("project_prompt_history", args=[project.pk])


class PromptHistoryTestCase(StudioTestCase):
    def run_prompt(self, prompt, *, user=None, project=None, ago=0, **fields):
        """A finished job made `ago` minutes ago."""
        job = make_job(
            project or self.project,
            user or self.editor,
            self.model,
            prompt=prompt,
            status=JobStatus.FINISHED,
            **fields,
        )
        job.created_at = timezone.now() - timedelta(minutes=ago)
        job.save(update_fields=["created_at"])
        return job

    def prompts(self, response):
        """The prompts listed, in order (from the HTML: HTMX fragments have no context)."""
        found = re.findall(r'<p class="history-prompt">(.*?)</p>', response.content.decode(), re.S)
        return [html.unescape(prompt) for prompt in found]

    def get(self, url=HISTORY, user=None, htmx=False, **params):
        self.client.force_login(user or self.editor)
        headers = {"HX-Request": "true"} if htmx else {}
        return self.client.get(url, params, headers=headers)


class AcrossProjectsTestCase(PromptHistoryTestCase):
    def test_shows_the_users_prompts_in_every_project_newest_first(self):
        Membership.objects.create(team=self.other_team, user=self.editor, role=Role.EDITOR)
        self.run_prompt("a posters prompt", ago=10)
        self.run_prompt("an elsewhere prompt", project=self.other_project, ago=5)
        self.run_prompt("the owner's prompt", user=self.owner, ago=1)
        self.run_prompt("the outsider's prompt", user=self.outsider,
                        project=self.other_project, ago=1)

        response = self.get()

        self.assertEqual(response.status_code, 200)
        self.assertEqual(self.prompts(response), ["an elsewhere prompt", "a posters prompt"])
        self.assertContains(response, "Elsewhere / Hers")
        self.assertContains(response, "Alpha / Posters")
        self.assertNotContains(response, "the owner&#x27;s prompt")
        self.assertNotContains(response, "outsider")

    def test_prompts_in_teams_the_user_left_are_not_shown(self):
        self.run_prompt("from the old team")
        Membership.objects.filter(team=self.team, user=self.editor).delete()
        response = self.get()
        self.assertEqual(self.prompts(response), [])
        self.assertNotContains(response, "from the old team")

    def test_failed_and_waiting_runs_count_too(self):
        make_job(self.project, self.editor, self.model, prompt="still waiting")
        make_job(self.project, self.editor, self.model, prompt="it failed",
                 status=JobStatus.FAILED, error="out of memory")
        self.assertEqual(set(self.prompts(self.get())), {"still waiting", "it failed"})

    def test_repeated_runs_of_a_prompt_are_one_entry_with_its_latest_run(self):
        self.run_prompt("a red kite", ago=30, seed=1)
        self.run_prompt("something else", ago=20)
        latest = self.run_prompt("a red kite", ago=10, seed=3, negative_prompt="blurry",
                                 width=320)
        self.run_prompt("a red kite", ago=25, seed=2)

        entries = self.get().context["entries"]

        self.assertEqual([entry.prompt for entry in entries], ["a red kite", "something else"])
        kite = entries[0]
        self.assertEqual((kite.runs, kite.latest), (3, latest))
        response = self.get()
        self.assertContains(response, "3 runs")
        self.assertContains(response, "1 run<")
        self.assertContains(response, "blurry")
        self.assertContains(response, "320×64")

    def test_the_images_of_every_run_show_as_small_lazy_thumbnails(self):
        first = self.run_prompt("a lighthouse", ago=20)
        second = self.run_prompt("a lighthouse", ago=10)
        images = [make_image(first), make_image(second), make_image(second)]
        other = make_image(self.run_prompt("unrelated"))

        response = self.get()

        entry = response.context["entries"][1]
        self.assertEqual(entry.prompt, "a lighthouse")
        self.assertEqual({image.pk for image in entry.images}, {image.pk for image in images})
        self.assertEqual(entry.more_images, 0)
        html = response.content.decode()
        for image in images + [other]:
            url = reverse("image_file", args=[image.pk])
            tag = re.search(rf'<img src="{re.escape(url)}"[^>]*>', html).group(0)
            self.assertIn('loading="lazy"', tag)
            self.assertIn('width="72" height="72"', tag)
            self.assertIn('alt="', tag)

    def test_a_thumbnails_alt_text_is_escaped(self):
        """The thumbnails are built in Python (generation/templatetags/prompt_history_tags.py),
        escaped as the template escaped them."""
        image = make_image(self.run_prompt('a "quoted" <b>bold</b> & fox'))
        response = self.get()
        self.assertContains(response, f'title="Image {image.pk}, seed {image.seed}"><img src="')
        self.assertContains(response, 'alt="a &quot;quoted&quot; &lt;b&gt;bold&lt;/b&gt; &amp; fox')

    def test_many_images_show_the_newest_few_and_how_many_more(self):
        job = self.run_prompt("a prolific prompt", batch_size=4)
        for _ in range(prompt_history.IMAGES_PER_PROMPT + 3):
            make_image(job)
        entry = self.get().context["entries"][0]
        self.assertEqual(len(entry.images), prompt_history.IMAGES_PER_PROMPT)
        self.assertEqual(entry.more_images, 3)
        self.assertContains(self.get(), "+3<span")

    def test_anonymous_users_are_sent_to_log_in(self):
        for url in [HISTORY, project_history(self.project)]:
            response = self.client.get(url)
            self.assertEqual(response.status_code, 302)
            self.assertIn(reverse("login"), response["Location"])

    def test_the_top_bar_links_to_the_history(self):
        response = self.get(reverse("my_queue"))
        self.assertContains(response, f'href="{HISTORY}"')
        self.assertContains(self.get(), f'href="{HISTORY}" class="is-active"')

    def test_empty_history_says_what_to_do(self):
        response = self.get()
        self.assertContains(response, "No prompts yet")
        self.assertContains(response, reverse("dashboard"))


class ReuseTestCase(PromptHistoryTestCase):
    def test_reuse_opens_the_latest_runs_project_with_the_form_filled(self):
        Membership.objects.create(team=self.other_team, user=self.editor, role=Role.EDITOR)
        self.run_prompt("a red kite", ago=10, seed=5)
        latest = self.run_prompt("a red kite", project=self.other_project, ago=1, seed=77,
                                 steps=9, negative_prompt="fog")
        response = self.get()
        url = reverse("project_studio", args=[self.other_project.pk]) + f"?duplicate={latest.pk}"
        self.assertContains(response, f'href="{url}"')

        studio = self.client.get(url)

        self.assertEqual(studio.status_code, 200)
        self.assertContains(studio, "a red kite</textarea>")
        self.assertContains(studio, "fog</textarea>")
        initial = studio.context["form"].initial
        self.assertEqual((initial["seed"], initial["steps"]), (77, 9))

    def test_no_reuse_where_the_users_role_no_longer_allows_generating(self):
        self.run_prompt("made while an editor")
        Membership.objects.filter(team=self.team, user=self.editor).update(role=Role.VIEWER)
        response = self.get()
        self.assertEqual(self.prompts(response), ["made while an editor"])
        self.assertNotContains(response, "?duplicate=")


class ProjectHistoryTestCase(PromptHistoryTestCase):
    def test_shows_the_users_prompts_in_this_project_only(self):
        other = Project.objects.create(team=self.team, name="Covers")
        self.run_prompt("in posters")
        self.run_prompt("in covers", project=other)
        self.run_prompt("by the owner", user=self.owner)

        response = self.get(project_history(self.project))

        self.assertEqual(self.prompts(response), ["in posters"])
        self.assertContains(response, "Prompt history of Posters")

    def test_everyone_shows_every_members_prompts_with_who_ran_them(self):
        self.run_prompt("by the editor", ago=2)
        self.run_prompt("by the owner", user=self.owner, ago=1)
        self.run_prompt("elsewhere", user=self.outsider, project=self.other_project)

        response = self.get(project_history(self.project), user=self.viewer, who="everyone")

        self.assertEqual(self.prompts(response), ["by the owner", "by the editor"])
        self.assertContains(response, "by carol")
        # Viewers may look but not generate: no Reuse.
        self.assertNotContains(response, "?duplicate=")
        mine = self.get(project_history(self.project), user=self.viewer)
        self.assertEqual(self.prompts(mine), [])

    def test_outsiders_get_404(self):
        self.run_prompt("secret")
        for params in [{}, {"who": "everyone"}]:
            response = self.get(project_history(self.project), user=self.outsider, **params)
            self.assertEqual(response.status_code, 404)
        self.assertEqual(self.get(reverse("project_prompt_history", args=[99999])).status_code,
                         404)

    def test_the_studio_links_to_the_projects_history(self):
        response = self.get(reverse("project_studio", args=[self.project.pk]))
        self.assertContains(response, f'href="{project_history(self.project)}"')


class SearchTestCase(PromptHistoryTestCase):
    def setUp(self):
        self.run_prompt("A lighthouse at dusk, oil painting", ago=4)
        self.run_prompt("a cat on a windowsill", ago=3, negative_prompt="lighthouse")
        self.run_prompt("Lighthouses in a storm", ago=2)
        self.run_prompt("portrait of a sailor", ago=1)

    def test_finds_prompts_by_words_in_any_case(self):
        self.assertEqual(
            self.prompts(self.get(q="LIGHTHOUSE")),
            ["Lighthouses in a storm", "A lighthouse at dusk, oil painting"],
        )
        self.assertEqual(self.prompts(self.get(q="oil lighthouse")),
                         ["A lighthouse at dusk, oil painting"])
        self.assertEqual(self.prompts(self.get(q="sailor")), ["portrait of a sailor"])

    def test_finds_while_the_user_is_still_typing(self):
        self.assertEqual(len(self.prompts(self.get(q="lightho"))), 2)
        self.assertEqual(self.prompts(self.get(q="wind")), ["a cat on a windowsill"])

    def test_no_match_says_so(self):
        response = self.get(q="submarine")
        self.assertEqual(self.prompts(response), [])
        self.assertContains(response, "No prompts match")
        self.assertContains(response, 'value="submarine"')

    def test_other_peoples_prompts_never_match(self):
        self.run_prompt("a lighthouse by the owner", user=self.owner)
        self.run_prompt("a lighthouse elsewhere", user=self.outsider, project=self.other_project)
        self.assertNotIn("a lighthouse by the owner", self.prompts(self.get(q="lighthouse")))
        self.assertNotIn("a lighthouse elsewhere", self.prompts(self.get(q="lighthouse")))

    def test_search_as_you_type_returns_only_the_results(self):
        response = self.get(q="sailor", htmx=True)
        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, "<html")
        self.assertContains(response, 'id="history-results"')
        self.assertContains(response, "portrait of a sailor")
        self.assertIn("HX-Request", response["Vary"])

    def test_the_page_has_a_search_box_that_filters_as_you_type(self):
        response = self.get()
        self.assertContains(response, 'type="search"')
        self.assertContains(response, "input changed delay:300ms")
        self.assertContains(response, 'hx-target="#history-results"')

    def test_hostile_search_strings_never_fail(self):
        for query in HOSTILE_QUERIES:
            with self.subTest(query=query[:40]):
                response = self.get(q=query)
                self.assertEqual(response.status_code, 200)
                self.assertNotContains(response, "<script>alert")
                response = self.get(project_history(self.project), q=query, htmx=True,
                                    favourites="1", page="2")
                self.assertEqual(response.status_code, 200)

    def test_sql_in_the_search_is_just_text(self):
        self.run_prompt("1' OR '1'='1 literally")
        self.assertEqual(self.prompts(self.get(q="1' OR '1'='1")), ["1' OR '1'='1 literally"])

    def test_odd_page_numbers_show_the_first_page(self):
        for page in ["abc", "-3", "0", "9" * 30]:
            response = self.get(page=page)
            self.assertEqual(response.status_code, 200)

    @skipUnless(connection.vendor == "postgresql", "full text search needs PostgreSQL")
    def test_postgresql_full_text_search_understands_word_forms(self):
        self.run_prompt("clouds drifting over the sky", ago=0)
        # Stemmed English: "skies" is a form of "sky", "drift" of "drifting".
        self.assertEqual(self.prompts(self.get(q="skies")), ["clouds drifting over the sky"])
        self.assertEqual(self.prompts(self.get(q="drift cloud")),
                         ["clouds drifting over the sky"])
        # Words English search leaves out still find, as written.
        self.assertEqual(self.prompts(self.get(q="over the")), ["clouds drifting over the sky"])
        self.assertEqual(len(self.prompts(self.get(q="lightho"))), 2)


class PaginationTestCase(PromptHistoryTestCase):
    def test_more_prompts_load_page_by_page(self):
        total = prompt_history.PAGE_SIZE + 5
        for n in range(total):
            self.run_prompt(f"prompt number {n}", ago=n)

        first = self.get()
        self.assertEqual(len(self.prompts(first)), prompt_history.PAGE_SIZE)
        self.assertEqual(self.prompts(first)[0], "prompt number 0")
        self.assertContains(first, 'hx-get="?page=2"')
        self.assertContains(first, 'hx-trigger="click, revealed"')

        second = self.get(page=2, htmx=True)
        self.assertNotContains(second, "<html")
        self.assertNotContains(second, 'id="history-results"')
        self.assertEqual(
            self.prompts(second), [f"prompt number {n}" for n in range(20, total)]
        )
        self.assertNotContains(second, "Load more")

    def test_load_more_keeps_the_search_and_filters(self):
        for n in range(prompt_history.PAGE_SIZE + 1):
            self.run_prompt(f"kite {n}", ago=n)
        response = self.get(q="kite", favourites="0")
        self.assertContains(response, "?q=kite&amp;favourites=0&amp;page=2")


class QueryCountTestCase(PromptHistoryTestCase):
    def make_history(self, prompts, runs, images, projects=None):
        projects = projects or [
            Project.objects.create(team=self.team, name=f"P{n}") for n in range(3)
        ]
        for n in range(prompts):
            for run in range(runs):
                job = self.run_prompt(f"prompt {n}", project=projects[(n + run) % len(projects)])
                for _ in range(images):
                    make_image(job)

    def assert_constant(self, url, expected, **params):
        # `expected` includes the top bar's one count of unread notifications, and the
        # page's image counts (one query over the page's jobs, not every image in scope);
        # the session comes from the cache.
        self.client.force_login(self.editor)
        with self.assertNumQueries(expected):
            response = self.client.get(url, params)
        self.assertEqual(response.status_code, 200)
        return response

    def test_across_projects(self):
        self.make_history(prompts=1, runs=1, images=1)
        few = self.assert_constant(HISTORY, 8)
        self.make_history(prompts=30, runs=3, images=4)
        many = self.assert_constant(HISTORY, 8)
        self.assertEqual(len(few.context["entries"]), 1)
        self.assertEqual(len(many.context["entries"]), prompt_history.PAGE_SIZE)
        PromptFavourite.objects.create(user=self.editor, prompt="prompt 3")
        starred = self.assert_constant(HISTORY, 8, q="prompt", favourites="1")
        self.assertEqual(self.prompts(starred), ["prompt 3"])

    def test_per_project(self):
        self.make_history(prompts=1, runs=1, images=1, projects=[self.project])
        self.assert_constant(project_history(self.project), 10, who="everyone")
        self.make_history(prompts=30, runs=3, images=4, projects=[self.project])
        for n in range(10):
            self.run_prompt(f"by the owner {n}", user=self.owner)
        response = self.assert_constant(project_history(self.project), 10, who="everyone")
        self.assertEqual(len(response.context["entries"]), prompt_history.PAGE_SIZE)
