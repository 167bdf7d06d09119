"""The model library list: every signed-in user browses it; search by name, filter by family
and kind; site staff also see switched-off models, sources and edit links."""

from django.urls import reverse

from generation.models import DiffusionModel, ModelFamily, ModelKind
from studio.accounts.models import User
from tests.base import StudioTestCase


class ModelLibraryTestCase(StudioTestCase):
    url = reverse("model_library")

    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.staff = User.objects.create_user("sam", "sam@example.org", cls.password, is_staff=True)
        cls.xl = DiffusionModel.objects.create(
            name="Juggernaut XL", source="owner/juggernaut-xl", family=ModelFamily.SDXL
        )
        cls.canny = DiffusionModel.objects.create(
            name="Canny edges", source="lllyasviel/sd-controlnet-canny", kind=ModelKind.CONTROLNET
        )
        cls.off = DiffusionModel.objects.create(
            name="Retired model", source="owner/retired", is_enabled=False
        )

    def names(self, response):
        return [model.name for model in response.context["models"]]

    def test_anonymous_is_sent_to_log_in(self):
        response = self.client.get(self.url)
        self.assertEqual(response.status_code, 302)
        self.assertTrue(response["Location"].startswith(reverse("login")))

    def test_every_user_sees_enabled_models_of_every_kind(self):
        for user in self.users_by_role().values():
            self.client.force_login(user)
            response = self.client.get(self.url)
            self.assertEqual(response.status_code, 200)
            self.assertEqual(self.names(response), ["Canny edges", "Juggernaut XL", "tiny-sd15"])
            self.assertContains(response, "ControlNet")
            self.assertNotContains(response, "Not in the studio yet")  # SDXL generates too
            self.assertNotContains(response, "Add model")
            self.assertNotContains(response, "lllyasviel/sd-controlnet-canny")  # sources: staff

    def test_staff_also_see_switched_off_models_sources_and_edit_links(self):
        self.client.force_login(self.staff)
        response = self.client.get(self.url)
        self.assertIn("Retired model", self.names(response))
        self.assertContains(response, "owner/retired")
        self.assertContains(response, reverse("model_edit", args=[self.off.pk]))
        self.assertContains(response, reverse("model_create"))

    def test_search_by_name_is_case_insensitive(self):
        self.client.force_login(self.editor)
        response = self.client.get(self.url, {"q": "JUGGER"})
        self.assertEqual(self.names(response), ["Juggernaut XL"])

    def test_filters_by_family_and_kind(self):
        self.client.force_login(self.editor)
        self.assertEqual(
            self.names(self.client.get(self.url, {"family": "sdxl"})), ["Juggernaut XL"]
        )
        self.assertEqual(
            self.names(self.client.get(self.url, {"kind": "controlnet"})), ["Canny edges"]
        )
        both = self.client.get(self.url, {"family": "sd15", "kind": "checkpoint"})
        self.assertEqual(self.names(both), ["tiny-sd15"])

    def test_nothing_found_says_so_and_offers_to_clear(self):
        self.client.force_login(self.editor)
        response = self.client.get(self.url, {"q": "no such model"})
        self.assertContains(response, "No model matches")
        self.assertContains(response, "Clear filters")

    def test_an_unknown_filter_value_filters_nothing_and_does_not_fail(self):
        self.client.force_login(self.editor)
        response = self.client.get(self.url, {"family": "sd99", "q": "tiny"})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(self.names(response), ["tiny-sd15"])

    def test_htmx_search_answers_only_the_results(self):
        self.client.force_login(self.editor)
        response = self.client.get(
            self.url, {"q": "canny"}, headers={"HX-Request": "true", "HX-Target": "model-results"}
        )
        self.assertContains(response, 'id="model-results"')
        self.assertContains(response, "Canny edges")
        self.assertNotContains(response, "<html")

    def test_the_main_navigation_links_the_library(self):
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("dashboard"))
        self.assertContains(response, f'href="{self.url}"')
