"""A team's wildcards: members see them, editors add, change and delete them, outsiders get a
404, and what a wildcard may hold is checked when it is saved."""

from django.urls import reverse

from generation.wildcards.models import (
    MAX_TEAM_WILDCARD_CHARACTERS,
    MAX_VALUE_LENGTH,
    MAX_WILDCARDS_PER_TEAM,
    Wildcard,
)
from tests.base import StudioTestCase


class WildcardLibraryTestCase(StudioTestCase):
    def setUp(self):
        self.url = reverse("team_wildcards", args=[self.team.pk])

    def add(self, user=None, **data):
        self.client.force_login(user or self.editor)
        return self.client.post(self.url, {"name": "season", "values": "spring\nsummer", **data})

    def test_an_editor_adds_one_and_members_see_it(self):
        response = self.add(values="# the four\nspring\n  summer  \n\nautumn\nwinter\n")
        self.assertRedirects(response, self.url)
        wildcard = Wildcard.objects.get()
        self.assertEqual(wildcard.value_list(), ["spring", "summer", "autumn", "winter"])
        self.assertEqual(wildcard.created_by, self.editor)
        self.client.force_login(self.viewer)
        response = self.client.get(self.url)
        self.assertContains(response, "__season__")
        self.assertContains(response, "4: ")
        self.assertNotContains(response, "Add a wildcard")

    def test_viewers_may_not_add_and_outsiders_see_nothing(self):
        self.assertEqual(self.add(user=self.viewer).status_code, 403)
        self.assertEqual(self.add(user=self.outsider).status_code, 404)
        self.client.force_login(self.outsider)
        self.assertEqual(self.client.get(self.url).status_code, 404)
        self.assertFalse(Wildcard.objects.exists())

    def test_other_teams_wildcards_are_neither_shown_nor_editable(self):
        theirs = Wildcard.objects.create(team=self.other_team, name="secret", values="x")
        self.client.force_login(self.editor)
        self.assertNotContains(self.client.get(self.url), "secret")
        edit = reverse("wildcard_edit", args=[theirs.pk])
        self.assertEqual(self.client.post(edit, {"name": "mine", "values": "y"}).status_code, 404)
        delete = reverse("wildcard_delete", args=[theirs.pk])
        self.assertEqual(self.client.post(delete).status_code, 404)
        theirs.refresh_from_db()
        self.assertEqual((theirs.name, theirs.values), ("secret", "x"))

    def test_an_editor_edits_and_deletes(self):
        wildcard = Wildcard.objects.create(team=self.team, name="season", values="spring")
        self.client.force_login(self.editor)
        edit = reverse("wildcard_edit", args=[wildcard.pk])
        self.assertContains(self.client.get(edit), "Edit __season__")
        response = self.client.post(edit, {"name": "seasons", "values": "spring\nwinter"})
        self.assertRedirects(response, self.url)
        saved_before = wildcard.updated_at
        wildcard.refresh_from_db()
        self.assertEqual((wildcard.name, wildcard.value_list()), ("seasons", ["spring", "winter"]))
        self.assertGreater(wildcard.updated_at, saved_before)
        self.client.force_login(self.viewer)
        delete = reverse("wildcard_delete", args=[wildcard.pk])
        self.assertEqual(self.client.post(delete).status_code, 403)
        self.client.force_login(self.editor)
        self.assertRedirects(self.client.post(delete), self.url)
        self.assertFalse(Wildcard.objects.exists())

    def test_what_a_wildcard_may_hold(self):
        cases = [
            ("name", "Use letters, digits", {"name": "two words"}),
            ("name", "Use letters, digits", {"name": "../etc"}),
            ("name", "At most 64", {"name": "a" * 65}),
            ("values", "at least one fragment", {"values": "# only a comment\n\n"}),
            ("values", "At most 1,000 fragments", {"values": "x\n" * 1001}),
            ("values", "Fragment 2 has 501", {"values": "ok\n" + "y" * 501}),
            ("values", "wildcards can't use wildcards", {"values": "a __season__ day"}),
            ("values", "holds a LoRA tag", {"values": "ink <lora:ink:0.5>"}),
            ("values", "Fragment 1 has 11 { } groups", {"values": "{a|b} " * 11}),
        ]
        for field, message, data in cases:
            with self.subTest(data=str(data)[:40]):
                response = self.add(**data)
                self.assertEqual(response.status_code, 422)
                self.assertIn(message, " ".join(response.context["form"].errors[field]))
        self.assertFalse(Wildcard.objects.exists())

    def test_a_name_is_the_teams_once_whatever_its_case(self):
        Wildcard.objects.create(team=self.team, name="Season", values="spring")
        Wildcard.objects.create(team=self.other_team, name="colour", values="red")
        response = self.add(name="season")
        self.assertEqual(response.status_code, 422)
        self.assertIn("has a wildcard called season already",
                      " ".join(response.context["form"].errors["name"]))
        self.assertRedirects(self.add(name="colour"), self.url)  # another team's name is free

    def test_a_team_keeps_a_bounded_number_and_size_of_wildcards(self):
        """A prompt with __*__ loads all of its team's wildcards in the request that queues it."""
        Wildcard.objects.bulk_create(
            Wildcard(team=self.team, name=f"w{number}", values="x")
            for number in range(MAX_WILDCARDS_PER_TEAM)
        )
        response = self.add()
        self.assertEqual(response.status_code, 422)
        self.assertIn("the most it may keep", " ".join(response.context["form"].non_field_errors()))
        self.assertFalse(Wildcard.objects.filter(name="season").exists())
        edit = reverse("wildcard_edit", args=[Wildcard.objects.get(name="w0").pk])
        self.assertRedirects(self.client.post(edit, {"name": "w0", "values": "y"}), self.url)

        Wildcard.objects.filter(team=self.team).delete()
        big = "\n".join(["z" * MAX_VALUE_LENGTH] * 990)
        Wildcard.objects.bulk_create(
            Wildcard(team=self.team, name=f"big{number}", values=big)
            for number in range(MAX_TEAM_WILDCARD_CHARACTERS // len(big))
        )
        response = self.add(values=big)
        self.assertEqual(response.status_code, 422)
        errors = " ".join(response.context["form"].errors["values"])
        self.assertIn("at most 1,000,000 in all", errors)
        self.assertFalse(Wildcard.objects.filter(name="season").exists())
        Wildcard.objects.create(team=self.other_team, name="season", values=big)
        self.assertRedirects(self.add(values="short"), self.url)  # the sum is the team's own
