"""A team's styles: members see them, editors add, change and delete them, outsiders get a
404, and a style is checked when it is saved."""

from django.urls import reverse

from generation.styles.models import Style
from tests.base import StudioTestCase


class StyleLibraryTestCase(StudioTestCase):
    def setUp(self):
        self.url = reverse("team_styles", args=[self.team.pk])

    def add(self, user=None, **data):
        self.client.force_login(user or self.editor)
        return self.client.post(self.url, {"name": "Film", "prompt": "analog photo of {prompt}",
                                           "negative_prompt": "digital", **data})

    def test_an_editor_adds_one_and_members_see_it(self):
        self.assertRedirects(self.add(name="  Film   noir "), self.url)
        style = Style.objects.get()
        self.assertEqual((style.name, style.prompt, style.negative_prompt, style.created_by),
                         ("Film noir", "analog photo of {prompt}", "digital", self.editor))
        self.client.force_login(self.viewer)
        response = self.client.get(self.url)
        self.assertContains(response, "Film noir")
        self.assertContains(response, "analog photo of {prompt}")
        self.assertNotContains(response, "Add a style")

    def test_the_team_page_links_to_it(self):
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("team_detail", args=[self.team.pk]))
        self.assertContains(response, f'href="{self.url}">Styles</a>')

    def test_viewers_may_not_add_and_outsiders_see_nothing(self):
        self.assertEqual(self.add(user=self.viewer).status_code, 403)
        self.assertEqual(self.add(user=self.outsider).status_code, 404)
        self.client.force_login(self.outsider)
        self.assertEqual(self.client.get(self.url).status_code, 404)
        self.assertFalse(Style.objects.exists())

    def test_other_teams_styles_are_neither_shown_nor_editable(self):
        theirs = Style.objects.create(team=self.other_team, name="Secret", prompt="x")
        self.client.force_login(self.editor)
        self.assertNotContains(self.client.get(self.url), "Secret")
        edit = reverse("style_edit", args=[theirs.pk])
        self.assertEqual(self.client.get(edit).status_code, 404)
        self.assertEqual(self.client.post(edit, {"name": "Mine", "prompt": "y"}).status_code, 404)
        self.assertEqual(self.client.post(reverse("style_delete", args=[theirs.pk])).status_code,
                         404)
        theirs.refresh_from_db()
        self.assertEqual((theirs.name, theirs.prompt), ("Secret", "x"))

    def test_an_editor_edits_and_deletes(self):
        style = Style.objects.create(team=self.team, name="Film", prompt="film grain")
        self.client.force_login(self.editor)
        edit = reverse("style_edit", args=[style.pk])
        self.assertContains(self.client.get(edit), "Edit the style Film")
        response = self.client.post(edit, {"name": "Grain", "prompt": "{prompt}, grain",
                                           "negative_prompt": ""})
        self.assertRedirects(response, self.url)
        style.refresh_from_db()
        self.assertEqual((style.name, style.prompt), ("Grain", "{prompt}, grain"))
        self.client.force_login(self.viewer)
        delete = reverse("style_delete", args=[style.pk])
        self.assertEqual(self.client.post(delete).status_code, 403)
        self.client.force_login(self.editor)
        self.assertRedirects(self.client.post(delete), self.url)
        self.assertFalse(Style.objects.exists())

    def test_bad_styles_are_field_errors(self):
        Style.objects.create(team=self.team, name="Film", prompt="film grain")
        Style.objects.create(team=self.other_team, name="Ink", prompt="ink")
        cases = [
            ({"name": "film"}, "name", "has a style called film already"),
            ({"name": ""}, "name", "Name the style"),
            ({"name": "x" * 65}, "name", "At most 64 characters"),
            ({"name": "Empty", "prompt": "", "negative_prompt": ""}, "prompt",
             "its negative prompt, or both"),
            ({"name": "Long", "prompt": "x" * 2001}, "prompt", "At most 2,000 characters"),
        ]
        for data, field, message in cases:
            with self.subTest(field=field, message=message):
                response = self.add(**data)
                self.assertEqual(response.status_code, 422)
                self.assertIn(message, " ".join(response.context["form"].errors[field]))
        # Another team's name is free in this one.
        self.assertRedirects(self.add(name="Ink"), self.url)
        self.assertEqual(Style.objects.filter(team=self.team).count(), 2)
