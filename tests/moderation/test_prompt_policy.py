"""Prompt policy: matching rules, the generate form and the service refuse blocked prompts,
blocks are logged, repeated blocks open one case."""

from unittest import mock

from django.core.exceptions import ValidationError
from django.test import SimpleTestCase
from django.urls import reverse

from generation import services
from generation.models import GenerationJob
from studio.moderation.models import Case, CaseKind, Policy, PromptBlock
from studio.moderation.policy import CompiledPolicy, check_regex, find_matches
from studio.moderation.services import PromptBlocked, UserSuspended, user_sanction
from tests.base import StudioTestCase


def matches(text, **lists):
    return [match.term for match in find_matches(text, [CompiledPolicy(**lists)])]


class MatchingTests(SimpleTestCase):
    def test_whole_words_any_case_and_accents(self):
        self.assertEqual(matches("A CAFÉ at night", blocked_terms="cafe"), ["cafe"])
        self.assertEqual(matches("a cafe", blocked_terms="Café"), ["Café"])
        self.assertEqual(matches("ｐｅｇ on a wall", blocked_terms="peg"), ["peg"])  # NFKD
        self.assertEqual(matches("cafeteria", blocked_terms="cafe"), [])

    def test_plural_forms(self):
        for text in ("two pegs", "the boxes", "many puppies", "one puppy", "a box"):
            with self.subTest(text=text):
                self.assertTrue(matches(text, blocked_terms="peg\nbox\npuppy"))
        self.assertEqual(matches("pegasus", blocked_terms="peg"), [])

    def test_multi_word_terms_match_across_whitespace(self):
        self.assertEqual(matches("a red   Balloon", blocked_terms="red balloon"), ["red balloon"])
        self.assertEqual(matches("red balloons", blocked_terms="red balloon"), ["red balloon"])
        self.assertEqual(matches("a red, balloon", blocked_terms="red balloon"), [])

    def test_pegboard_passes_when_peg_is_blocked(self):
        self.assertEqual(matches("a workshop pegboard with tools", blocked_terms="peg"), [])
        self.assertEqual(matches("a peg on a pegboard", blocked_terms="peg"), ["peg"])

    def test_allow_list_overrides_a_blocked_word_inside_it(self):
        lists = {"blocked_terms": "peg", "allowed_terms": "peg leg"}
        self.assertEqual(matches("a pirate with a peg leg", **lists), [])
        self.assertEqual(matches("a peg leg and a peg", **lists), ["peg"])

    def test_regexes_run_on_normalised_text(self):
        self.assertEqual(matches("Sêcret-42 plans", regexes=r"secret-\d+"), [r"secret-\d+"])
        self.assertEqual(matches("secret plans", regexes=r"secret-\d+"), [])

    def test_site_allow_list_applies_to_team_terms(self):
        site = CompiledPolicy(allowed_terms="peg leg", scope="site")
        team = CompiledPolicy(blocked_terms="peg", scope="Alpha")
        self.assertEqual(find_matches("a peg leg", [site, team]), [])
        self.assertEqual(len(find_matches("a peg", [site, team])), 1)

    def test_unsafe_or_broken_regexes_are_refused(self):
        self.assertIn("not a valid regular expression", check_regex("(unclosed"))
        self.assertIn("backreference", check_regex(r"(a)\1"))
        self.assertIn("longer than", check_regex("a" * 300))
        self.assertIn("matches empty text", check_regex("x*"))
        # Empty at a word's edge, so in every prompt with a word.
        for pattern in (r"\b", r"x?\b", r"(?:\b|zz)", r"secret|\b"):
            self.assertIn("matches empty text", check_regex(pattern), pattern)
        self.assertIsNone(check_regex(r"secret-\d+"))


class PolicyValidationTests(StudioTestCase):
    def test_a_bad_regex_is_a_clear_error(self):
        policy = Policy(regexes="fine\n(unclosed")
        with self.assertRaises(ValidationError) as raised:
            policy.full_clean()
        self.assertIn("regexes", raised.exception.message_dict)
        self.assertIn("“(unclosed”", raised.exception.message_dict["regexes"][0])

    def test_one_site_policy_and_one_per_team(self):
        from django.db import IntegrityError, transaction

        Policy.objects.create(blocked_terms="x")
        Policy.objects.create(team=self.team, blocked_terms="y")
        with self.assertRaises(IntegrityError), transaction.atomic():
            Policy.objects.create(blocked_terms="z")


class BlockedPromptTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        Policy.objects.create(blocked_terms="gore\npeg", allowed_terms="peg leg")
        Policy.objects.create(team=cls.team, blocked_terms="clown", regexes=r"secret-\d+")

    def setUp(self):
        self.client.force_login(self.editor)
        self.url = reverse("job_create", args=[self.project.pk])
        self.params = {
            "prompt": "a lighthouse at dusk",
            "negative_prompt": "blurry",
            "model": self.model.pk,
            "steps": 20,
            "guidance_scale": 7.5,
            "width": 512,
            "height": 512,
        }

    def post(self, **overrides):
        with mock.patch("generation.services.enqueue_generation"):
            with self.captureOnCommitCallbacks(execute=True):
                return self.client.post(
                    self.url, {**self.params, **overrides}, headers={"HX-Request": "true"}
                )

    def test_form_refuses_naming_term_and_field_and_logs_it(self):
        response = self.post(prompt="a scene full of GORE")
        self.assertEqual(response.status_code, 422)
        message = "The prompt contains “gore”, which this studio does not allow."
        self.assertIn(message, " ".join(response.context["form"].errors["prompt"]))
        self.assertContains(response, "contains “gore”", status_code=422)
        self.assertFalse(GenerationJob.objects.exists())
        block = PromptBlock.objects.get()
        self.assertEqual(
            (block.user, block.team, block.field, block.term, block.text),
            (self.editor, self.team, "prompt", "gore", "a scene full of GORE"),
        )

    def test_negative_prompt_is_checked_and_named(self):
        response = self.post(negative_prompt="clowns")
        self.assertEqual(response.status_code, 422)
        errors = response.context["form"].errors
        self.assertIn("The negative prompt contains “clown”", " ".join(errors["negative_prompt"]))
        self.assertFalse(GenerationJob.objects.exists())

    def test_team_policy_applies_only_in_its_team(self):
        self.assertEqual(self.post(prompt="secret-42 lair").status_code, 422)
        self.client.force_login(self.outsider)
        url = reverse("job_create", args=[self.other_project.pk])
        with mock.patch("generation.services.enqueue_generation"):
            response = self.client.post(
                url, {**self.params, "prompt": "a clown"}, headers={"HX-Request": "true"}
            )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(GenerationJob.objects.count(), 1)

    def test_pegboard_and_allow_listed_phrases_generate(self):
        for prompt in ("a pegboard with tools", "a pirate with a peg leg"):
            with self.subTest(prompt=prompt):
                self.assertEqual(self.post(prompt=prompt).status_code, 200)
        self.assertEqual(GenerationJob.objects.count(), 2)
        self.assertFalse(PromptBlock.objects.exists())

    def service_params(self, **overrides):
        return {**self.params, "model": self.model, **overrides}

    def test_service_refuses_api_callers_too(self):
        for create in (services.job_create, services.jobs_create):
            with self.subTest(create=create.__name__):
                with self.assertRaisesMessage(PromptBlocked, "The prompt contains “gore”"):
                    create(
                        user=self.editor, project=self.project,
                        params=self.service_params(prompt="gory gore"),
                    )
        self.assertFalse(GenerationJob.objects.exists())
        self.assertEqual(PromptBlock.objects.count(), 2)

    def test_three_blocks_within_an_hour_open_one_case_with_a_count(self):
        for _ in range(2):
            self.post(prompt="gore")
        self.assertFalse(Case.objects.exists())
        self.post(prompt="gore")
        case = Case.objects.get()
        self.assertEqual(
            (case.kind, case.subject_user, case.team, case.count, case.status),
            (CaseKind.PROMPT_REPEAT, self.editor, self.team, 3, "open"),
        )
        self.post(negative_prompt="clown")
        case.refresh_from_db()
        self.assertEqual(case.count, 4)
        self.assertEqual(Case.objects.count(), 1)

    def test_old_blocks_do_not_count(self):
        from datetime import timedelta

        from django.utils import timezone

        self.post(prompt="gore")
        self.post(prompt="gore")
        PromptBlock.objects.update(created_at=timezone.now() - timedelta(hours=2))
        self.post(prompt="gore")
        self.assertFalse(Case.objects.exists())

    def test_a_suspended_user_cannot_generate(self):
        user_sanction(user=self.editor, moderator=self.owner, action="ban", reason_code="spam")
        response = self.post()
        self.assertEqual(response.status_code, 422)
        self.assertContains(response, "may not generate images until", status_code=422)
        with self.assertRaisesMessage(UserSuspended, "may not generate images"):
            services.jobs_create(
                user=self.editor, project=self.project, params=self.service_params()
            )
        self.assertFalse(GenerationJob.objects.exists())
