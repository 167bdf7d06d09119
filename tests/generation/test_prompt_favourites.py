"""Favourite prompts: a user stars a prompt in their history (an HTMX toggle), filters the
history to starred prompts; one star per user and prompt text, nobody else sees it."""

from django.db import IntegrityError, transaction
from django.urls import reverse

from generation.models import JobStatus, PromptFavourite
from tests.base import StudioTestCase, make_job

HISTORY = reverse("prompt_history")


class FavouritesTestCase(StudioTestCase):
    def job(self, prompt="a red kite", user=None, project=None, **fields):
        return make_job(project or self.project, user or self.editor, self.model,
                        prompt=prompt, status=JobStatus.FINISHED, **fields)

    def toggle(self, job, user=None, htmx=True, **data):
        self.client.force_login(user or self.editor)
        headers = {"HX-Request": "true"} if htmx else {}
        return self.client.post(reverse("prompt_favourite", args=[job.pk]), data,
                                headers=headers)

    def starred(self, user=None):
        return list(
            PromptFavourite.objects.filter(user=user or self.editor).values_list(
                "prompt", flat=True
            )
        )

    def history(self, user=None, **params):
        self.client.force_login(user or self.editor)
        return self.client.get(HISTORY, params)

    def test_the_star_toggles_on_and_off(self):
        job = self.job(negative_prompt="fog")

        response = self.toggle(job)

        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, "<html")
        self.assertContains(response, 'aria-pressed="true"')
        self.assertContains(response, f'hx-post="{reverse("prompt_favourite", args=[job.pk])}"')
        favourite = PromptFavourite.objects.get(user=self.editor)
        self.assertEqual((favourite.prompt, favourite.negative_prompt), ("a red kite", "fog"))

        response = self.toggle(job)

        self.assertContains(response, 'aria-pressed="false"')
        self.assertEqual(self.starred(), [])

    def test_the_history_shows_which_prompts_are_starred(self):
        starred, plain = self.job("starred prompt"), self.job("plain prompt")
        self.toggle(starred)
        entries = {entry.prompt: entry for entry in self.history().context["entries"]}
        self.assertTrue(entries["starred prompt"].is_favourite)
        self.assertFalse(entries["plain prompt"].is_favourite)
        response = self.history()
        self.assertContains(response, 'aria-pressed="true"', count=1)
        self.assertContains(response, 'aria-pressed="false"', count=1)
        self.assertContains(response, reverse("prompt_favourite", args=[plain.pk]))

    def test_one_star_per_user_and_prompt_text(self):
        first, second = self.job("same words"), self.job("same words", seed=7)
        self.toggle(first)
        self.assertEqual(self.starred(), ["same words"])
        # Any run of the prompt holds the same star: toggling another run takes it off.
        self.toggle(second)
        self.assertEqual(self.starred(), [])
        PromptFavourite.objects.create(user=self.editor, prompt="same words")
        with self.assertRaises(IntegrityError), transaction.atomic():
            PromptFavourite.objects.create(user=self.editor, prompt="same words")
        # Another user may star the same words.
        PromptFavourite.objects.create(user=self.owner, prompt="same words")

    def test_long_prompts_can_be_starred(self):
        job = self.job("a very long prompt, " * 100)
        self.toggle(job)
        self.assertEqual(self.starred(), [job.prompt])

    def test_favourites_only_filter(self):
        self.job("kept prompt")
        self.job("other prompt")
        self.job("kept prompt", seed=3)
        self.toggle(self.job("kept prompt", seed=4))

        response = self.history(favourites="1")

        self.assertEqual([entry.prompt for entry in response.context["entries"]],
                         ["kept prompt"])
        self.assertEqual(response.context["entries"][0].runs, 3)
        self.assertContains(response, 'name="favourites" value="1" checked')
        self.assertEqual(len(self.history().context["entries"]), 2)

    def test_favourites_filter_combines_with_search_and_the_project_page(self):
        self.toggle(self.job("starred lighthouse"))
        self.toggle(self.job("starred sailor"))
        self.job("plain lighthouse")
        response = self.history(favourites="1", q="lighthouse")
        self.assertEqual([e.prompt for e in response.context["entries"]], ["starred lighthouse"])
        response = self.client.get(
            reverse("project_prompt_history", args=[self.project.pk]), {"favourites": "1"}
        )
        self.assertEqual({e.prompt for e in response.context["entries"]},
                         {"starred lighthouse", "starred sailor"})

    def test_no_favourites_yet_says_so(self):
        self.job()
        response = self.history(favourites="1")
        self.assertContains(response, "No prompts match")
        self.assertContains(response, "not only favourites")

    def test_other_users_never_see_a_users_stars(self):
        self.job("shared words", user=self.owner)
        self.toggle(self.job("shared words"))

        owner_entry = self.history(user=self.owner).context["entries"][0]
        self.assertFalse(owner_entry.is_favourite)
        self.assertEqual(self.history(user=self.owner, favourites="1").context["entries"], [])
        # On the project page with everyone's prompts, the star is still the viewer's own.
        response = self.client.get(
            reverse("project_prompt_history", args=[self.project.pk]), {"who": "everyone"}
        )
        self.assertNotContains(response, 'aria-pressed="true"')

    def test_a_member_may_star_a_prompt_of_a_job_they_may_see(self):
        job = self.job("by the editor")
        self.toggle(job, user=self.viewer)
        self.assertEqual(self.starred(self.viewer), ["by the editor"])
        self.assertEqual(self.starred(self.editor), [])

    def test_outsiders_cannot_star_or_learn_of_a_job(self):
        job = self.job("secret prompt")
        response = self.toggle(job, user=self.outsider)
        self.assertEqual(response.status_code, 404)
        self.assertEqual(PromptFavourite.objects.count(), 0)

    def test_a_job_in_a_team_the_user_left_cannot_be_starred(self):
        job = self.job()
        self.editor.memberships.all().delete()
        self.assertEqual(self.toggle(job).status_code, 404)

    def test_unknown_jobs_are_404(self):
        self.client.force_login(self.editor)
        response = self.client.post("/jobs/999999/favourite/")
        self.assertEqual(response.status_code, 404)

    def test_anonymous_users_are_sent_to_log_in(self):
        job = self.job()
        response = self.client.post(reverse("prompt_favourite", args=[job.pk]))
        self.assertEqual(response.status_code, 302)
        self.assertIn(reverse("login"), response["Location"])
        self.assertEqual(PromptFavourite.objects.count(), 0)

    def test_only_post_toggles(self):
        self.client.force_login(self.editor)
        response = self.client.get(reverse("prompt_favourite", args=[self.job().pk]))
        self.assertEqual(response.status_code, 405)

    def test_without_javascript_the_form_returns_to_the_page(self):
        job = self.job()
        back = HISTORY + "?q=kite"
        response = self.toggle(job, htmx=False, next=back)
        self.assertRedirects(response, back, fetch_redirect_response=False)
        self.assertEqual(self.starred(), ["a red kite"])
        # Never to another site.
        response = self.toggle(job, htmx=False, next="https://evil.example/")
        self.assertRedirects(response, HISTORY, fetch_redirect_response=False)
