"""The team's LoRA library pages: members browse, editors edit and delete, outsiders get
404 for pages and files alike."""

from pathlib import Path

from django.urls import reverse

from generation.loras.models import JobLora, Lora
from tests.base import StudioTestCase, make_image, make_job
from tests.lora_builders import kohya_lora_bytes, kohya_metadata, make_lora

MAY_VIEW = {"owner", "admin", "editor", "viewer"}
MAY_MANAGE = {"owner", "admin", "editor"}


class LoraLibraryTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.lora = make_lora(
            cls.team, cls.editor, "watercolor",
            data=kohya_lora_bytes("sd15", metadata=kohya_metadata("sd15")),
            description="Soft washes of colour",
        )
        cls.xl = make_lora(cls.team, cls.owner, "ink-xl", family="sdxl",
                           trigger_words="ink, brush")
        cls.theirs = make_lora(cls.other_team, cls.outsider, "secret")

    def get_as(self, user, url):
        self.client.force_login(user)
        return self.client.get(url)

    def test_who_sees_the_list_and_the_detail_page_and_the_file(self):
        urls = [
            reverse("team_loras", args=[self.team.pk]),
            self.lora.get_absolute_url(),
            reverse("lora_file", args=[self.lora.pk]),
        ]
        for role, user in self.users_by_role().items():
            for url in urls:
                with self.subTest(role=role, url=url):
                    response = self.get_as(user, url)
                    self.assertEqual(response.status_code, 200 if role in MAY_VIEW else 404)

    def test_who_may_edit_upload_and_delete(self):
        urls = [reverse("lora_edit", args=[self.lora.pk]),
                reverse("lora_upload", args=[self.team.pk])]
        for role, user in self.users_by_role().items():
            expected = 200 if role in MAY_MANAGE else 403 if role in MAY_VIEW else 404
            for url in urls:
                with self.subTest(role=role, url=url):
                    self.assertEqual(self.get_as(user, url).status_code, expected)
        for user, status in [(self.viewer, 403), (self.outsider, 404)]:
            self.client.force_login(user)
            response = self.client.post(reverse("lora_delete", args=[self.lora.pk]))
            self.assertEqual(response.status_code, status)
            response = self.client.post(reverse("lora_edit", args=[self.lora.pk]),
                                        {"name": "hacked", "default_weight": "1"})
            self.assertEqual(response.status_code, status)
        self.lora.refresh_from_db()
        self.assertEqual(self.lora.name, "watercolor")

    def test_the_file_downloads_as_uploaded(self):
        response = self.get_as(self.viewer, reverse("lora_file", args=[self.lora.pk]))
        self.assertEqual(b"".join(response.streaming_content),
                         Path(self.lora.file.path).read_bytes())
        self.assertIn('attachment; filename="watercolor.safetensors"',
                      response["Content-Disposition"])

    def test_the_list_shows_only_the_teams_loras_with_search_and_filter(self):
        url = reverse("team_loras", args=[self.team.pk])
        response = self.get_as(self.viewer, url)
        self.assertContains(response, "watercolor")
        self.assertContains(response, "ink-xl")
        self.assertNotContains(response, "secret")
        self.assertNotContains(response, "Upload LoRA")  # viewers browse only
        self.assertContains(response, "css/loras.css")

        self.assertNotContains(self.client.get(url, {"q": "washes"}), "ink-xl")
        self.assertContains(self.client.get(url, {"q": "brush"}), "ink-xl")  # trigger words
        found = self.client.get(url, {"family": "sdxl"})
        self.assertContains(found, "ink-xl")
        self.assertNotContains(found, ">watercolor<")
        self.assertContains(self.client.get(url, {"q": "zzz"}), "No LoRA matches")

        partial = self.client.get(url, {"q": "ink"}, headers={"HX-Request": "true",
                                                              "HX-Target": "lora-results"})
        self.assertContains(partial, "ink-xl")
        self.assertNotContains(partial, "<html")

        self.client.force_login(self.editor)
        self.assertContains(self.client.get(url), "Upload LoRA")

    def test_the_detail_page_shows_what_the_file_says_and_where_it_was_used(self):
        job = make_job(self.project, self.editor, self.model)
        JobLora.objects.create(job=job, lora=self.lora, name="watercolor",
                               sha256=self.lora.sha256, weight=0.8, position=0)
        image = make_image(job)
        response = self.get_as(self.viewer, self.lora.get_absolute_url())
        self.assertContains(response, "&lt;lora:watercolor:1&gt;")
        self.assertContains(response, "Stable Diffusion 1.x")
        self.assertContains(response, "512x512")
        self.assertContains(response, self.lora.short_hash())
        self.assertContains(response, "used in 1 job")
        self.assertContains(response, f'data-image-id="{image.pk}"')
        self.assertContains(response, "<li>painting</li>", html=False)
        self.assertNotContains(response, "Delete watercolor")  # viewers
        # The list counts it too.
        listing = self.client.get(reverse("team_loras", args=[self.team.pk]))
        self.assertContains(listing, "1 job")
        # And the image links back to it.
        detail = self.client.get(image.get_absolute_url())
        self.assertContains(detail, self.lora.get_absolute_url())
        self.assertContains(detail, "watercolor · 0.8")

    def test_editors_edit_name_description_trigger_words_and_weight(self):
        self.client.force_login(self.editor)
        url = reverse("lora_edit", args=[self.lora.pk])
        response = self.client.post(url, {
            "name": "Water colour", "description": "New", "trigger_words": "wc , soft",
            "default_weight": "0.6",
        })
        self.assertRedirects(response, self.lora.get_absolute_url())
        self.lora.refresh_from_db()
        self.assertEqual(
            (self.lora.name, self.lora.description, self.lora.trigger_words,
             self.lora.default_weight),
            ("Water colour", "New", "wc, soft", 0.6),
        )

    def test_edit_refusals_name_the_problem(self):
        self.client.force_login(self.editor)
        url = reverse("lora_edit", args=[self.lora.pk])
        for data, field, message in [
            ({"name": "INK-XL"}, "name", "already in Alpha's library"),
            ({"name": "a<b"}, "name", "can't contain <"),
            ({"name": "  "}, "name", "required"),
            ({"default_weight": "2.5"}, "default_weight", "less than or equal to 2"),
        ]:
            with self.subTest(data):
                post = {"name": "watercolor", "default_weight": "1", **data}
                response = self.client.post(url, post)
                self.assertEqual(response.status_code, 422)
                self.assertIn(message, " ".join(response.context["form"].errors[field]))
        # Another team's LoRA by the same name is no conflict.
        response = self.client.post(url, {"name": "secret", "default_weight": "1"})
        self.assertEqual(response.status_code, 302)

    def test_delete_removes_the_file_and_keeps_the_jobs_record(self):
        # Its own LoRA: the file really goes (storage is not rolled back with the test).
        lora = make_lora(self.team, self.editor, "doomed")
        job = make_job(self.project, self.editor, self.model)
        JobLora.objects.create(job=job, lora=lora, name="doomed", sha256=lora.sha256,
                               weight=1, position=0)
        path = Path(lora.file.path)
        self.client.force_login(self.editor)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(reverse("lora_delete", args=[lora.pk]))
        self.assertRedirects(response, reverse("team_loras", args=[self.team.pk]))
        self.assertFalse(Lora.objects.filter(pk=lora.pk).exists())
        self.assertFalse(path.exists())
        used = JobLora.objects.get(job=job)
        self.assertEqual((used.lora, used.name, used.sha256), (None, "doomed", lora.sha256))
        self.assertEqual(self.client.get(lora.get_absolute_url()).status_code, 404)

    def test_the_team_page_links_to_the_library(self):
        response = self.get_as(self.viewer, self.team.get_absolute_url())
        self.assertContains(response, reverse("team_loras", args=[self.team.pk]))
