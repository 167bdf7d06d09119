"""Prompt-policy regexes run in RE2: no pattern can hang the web process, patterns RE2
can't run are refused on save naming what is unsupported, and saved ones it refuses are
reported on the policy page instead of breaking it."""

import time

from django.core.exceptions import ValidationError
from django.test import SimpleTestCase
from django.urls import reverse

from generation.models import GenerationJob
from studio.moderation.models import Policy
from studio.moderation.policy import CompiledPolicy, check_regex, find_matches
from tests.base import GenerateFormTestCase, StudioTestCase


def matched(text, regexes):
    return [match.matched for match in find_matches(text, [CompiledPolicy(regexes=regexes)])]


class RegexEngineTests(SimpleTestCase):
    def test_a_pattern_that_backtracks_catastrophically_in_re_runs_at_once(self):
        # Python's re takes seconds on 33 characters (each extra "a" multiplies its work by
        # about 1.5); the old nested-repetition check let this one through.
        started = time.perf_counter()
        self.assertEqual(matched("a" * 33 + "!", "(a|aa)+$"), [])
        self.assertLess(time.perf_counter() - started, 0.5)
        self.assertEqual(matched("a" * 33, "(a|aa)+$"), ["a" * 33])

    def test_nested_repetitions_are_accepted_now(self):
        for pattern in ("(a+)+$", r"(\w+\s?)+!", r"(?:secret-\d+)+"):
            with self.subTest(pattern=pattern):
                self.assertIsNone(check_regex(pattern))
        self.assertEqual(matched("top secret-1secret-2 plans", r"(?:secret-\d+)+"),
                         ["secret-1secret-2"])

    def test_constructs_re2_lacks_are_refused_naming_them(self):
        cases = {
            r"(a)\1": "backreferences",
            r"(?P<w>a)(?P=w)": "named backreferences",
            r"nude(?=s)": "lookahead",
            r"nude(?!s)": "negative lookahead",
            r"(?<=no )nude": "lookbehind",
            r"(?<!no )nude": "negative lookbehind",
            r"(?>nude)": "atomic groups",
            r"nude++": "possessive repetitions",
            r"nude\Z": "“\\Z”",
        }
        for pattern, construct in cases.items():
            with self.subTest(pattern=pattern):
                problem = check_regex(pattern)
                self.assertIn(f"“{pattern}” uses {construct}", problem)
                self.assertIn("does not support", problem)

    def test_patterns_too_big_to_check_quickly_are_refused(self):
        self.assertIn("too complex", check_regex("(?:.?){400}q"))
        self.assertIn("too complex", check_regex(r"(?:\pL|x){100}q"))
        self.assertIn("repeats more than 1000 times", check_regex("a{2000}"))
        self.assertIsNone(check_regex(r"\pL+ing\b"))

    def test_a_policys_patterns_together_are_capped_too(self):
        heavy = [rf"\pL+x{n}" for n in range(30)]  # 1,204 each: fine alone, not 30 together
        self.assertTrue(all(check_regex(pattern) is None for pattern in heavy))
        with self.assertRaises(ValidationError) as raised:
            Policy(regexes="\n".join(heavy)).clean()
        self.assertIn("Together these regexes are too complex",
                      raised.exception.message_dict["regexes"][0])
        Policy(regexes="\n".join(heavy[:5] + [rf"secret-{n}\d+" for n in range(400)])).clean()

    def test_case_accents_and_words_match_as_before(self):
        self.assertEqual(matched("Un CAFÉ noir", r"\bcafe\b"), ["cafe"])
        self.assertEqual(matched("a pegboard", r"\bpegs?\b"), [])
        self.assertEqual(matched("two PEGS", r"\bpegs?\b"), ["pegs"])
        # The pattern's own accents go too: "crème" finds "Creme" and "CRÈME".
        self.assertEqual(matched("CRÈME brûlée, creme caramel", "crème (brûlée|caramel)"),
                         ["creme brulee"])
        self.assertEqual(matched("Секрет", r"\pL+т"), ["секрет"])

    def test_saved_patterns_the_checker_refuses_are_left_out_and_listed(self):
        policy = CompiledPolicy(regexes="(?<=no )nude\nsecret-\\d+")
        self.assertEqual([pattern for pattern, _ in policy.regexes], [r"secret-\d+"])
        self.assertEqual(len(policy.refused_regexes), 1)
        self.assertIn("lookbehind", policy.refused_regexes[0])
        self.assertEqual(matched("secret-7", "(?<=no )nude\nsecret-\\d+"), ["secret-7"])


class SavedPolicyTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        # Saved before RE2 ran the patterns (Python's re accepted the lookbehind).
        Policy.objects.create(team=cls.team, regexes="(?<!no )nudes?\nsecret-\\d+")

    def test_the_policy_page_reports_saved_patterns_that_are_not_applied(self):
        self.client.force_login(self.admin)
        url = reverse("team_policy", args=[self.team.pk])
        response = self.client.get(url)
        self.assertContains(response, "Not applied:")
        self.assertContains(response, "negative lookbehind")
        response = self.client.get(url, {"sample": "nudes and secret-42"})
        self.assertEqual(
            [match.term for match in response.context["results"][0][2]], [r"secret-\d+"]
        )
        self.assertContains(response, "Not applied:")
        for user, status in ((self.editor, 403), (self.outsider, 404)):
            self.client.force_login(user)
            with self.subTest(user=user.username):
                response = self.client.get(url)
                self.assertEqual(response.status_code, status)
                self.assertNotIn(b"lookbehind", response.content)

    def test_saving_keeps_refusing_until_the_pattern_is_fixed(self):
        self.client.force_login(self.admin)
        url = reverse("team_policy", args=[self.team.pk])
        fields = {"blocked_terms": "clown", "allowed_terms": ""}
        response = self.client.post(url, {**fields, "regexes": "(?<!no )nudes?\nsecret-\\d+"})
        self.assertIn("lookbehind", " ".join(response.context["form"].errors["regexes"]))
        self.assertEqual(Policy.objects.get(team=self.team).blocked_terms, "")
        response = self.client.post(url, {**fields, "regexes": r"\bnudes?\b"})
        self.assertRedirects(response, url)
        response = self.client.get(url)
        self.assertNotContains(response, "Not applied:")


class GenerateWithRefusedPatternTests(GenerateFormTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        Policy.objects.create(team=cls.team, regexes="(?<!no )nudes?\nsecret-\\d+")

    def setUp(self):
        self.client.force_login(self.editor)
        self.url = reverse("job_create", args=[self.project.pk])
        self.params = {
            "prompt": "a lighthouse", "model": self.model.pk, "steps": 20,
            "guidance_scale": 7.5, "width": 512, "height": 512,
        }

    def test_the_other_patterns_still_apply_and_nothing_fails(self):
        with self.assertLogs("studio.moderation.models", "WARNING") as logs:
            self.assert_refused("prompt", r"secret-\d+", prompt="secret-9 lair")
        self.assertIn("lookbehind", logs.output[0])
        response = self.post(prompt="nudes at the beach")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(GenerationJob.objects.count(), 1)
