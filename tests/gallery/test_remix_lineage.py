"""Remixing public work into one's own project, the remix_of it records, and the lineage
graph of the image page (ancestors and descendants, only what the viewer may see)."""

from unittest import mock

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from gallery.models import Image, ModerationStatus, Visibility
from generation.loras.models import JobLora
from generation.models import DiffusionModel, GenerationJob, JobMode, TeamModelSetting
from studio.accounts.models import Membership, Role
from tests.base import StudioTestCase, make_image, make_job
from tests.lora_builders import make_lora


def publish(image):
    Image.objects.filter(pk=image.pk).update(
        visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
    )
    image.refresh_from_db()
    return image


class RemixTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.private_source = make_image(make_job(cls.project, cls.editor, cls.model,
                                                 prompt="a private sketch"))
        cls.job = make_job(
            cls.project, cls.editor, cls.model, prompt="a fox in the snow",
            negative_prompt="blurry", mode=JobMode.IMG2IMG, source_image=cls.private_source,
            strength=0.55, steps=12, guidance_scale=5.5, sampler="Euler a", clip_skip=2,
            hires_scale=1.5, hires_steps=6, hires_strength=0.4, seed=700, batch_size=2,
        )
        cls.image = publish(make_image(cls.job))
        cls.private = make_image(make_job(cls.project, cls.editor, cls.model, prompt="ours"))

    def remix(self, user, image=None, **params):
        self.client.force_login(user)
        return self.client.get(reverse("image_remix", args=[(image or self.image).pk]), params)

    def studio(self, user, image=None, project=None):
        self.client.force_login(user)
        url = reverse("project_studio", args=[(project or self.other_project).pk])
        return self.client.get(url, {"remix": (image or self.image).pk})

    def test_an_outsider_remixes_a_public_image_into_her_own_project(self):
        response = self.remix(self.outsider)
        studio = reverse("project_studio", args=[self.other_project.pk])
        self.assertRedirects(response, f"{studio}?remix={self.image.pk}",
                             fetch_redirect_response=False)
        response = self.client.get(response["Location"])
        initial = response.context["form"].initial
        expected = {
            "prompt": "a fox in the snow", "negative_prompt": "blurry", "steps": 12,
            "guidance_scale": 5.5, "sampler": "Euler a", "clip_skip": 2, "strength": 0.55,
            "hires_fix": True, "hires_scale": 1.5, "hires_steps": 6, "hires_strength": 0.4,
            "seed": 700, "batch_size": 1, "model": self.model.pk, "remix_of": self.image.pk,
            "width": 64, "height": 64,
        }
        for name, value in expected.items():
            with self.subTest(field=name):
                self.assertEqual(initial[name], value)
        self.assertContains(response, f"Remix of image {self.image.pk}")
        self.assertContains(response, f'name="remix_of" value="{self.image.pk}"')

    def test_the_page_offers_her_projects_defaulting_to_her_latest(self):
        newer = self.other_team.projects.create(name="Newer")
        self.other_team.projects.create(name="Unused")
        make_job(newer, self.outsider, self.model)
        self.client.force_login(self.outsider)
        response = self.client.get(self.image.get_absolute_url())
        self.assertContains(response, reverse("image_remix", args=[self.image.pk]))
        self.assertEqual(response.context["remix_default"], newer)
        self.assertEqual(len(response.context["remix_projects"]), 3)
        studio = reverse("project_studio", args=[newer.pk])
        self.assertEqual(self.remix(self.outsider)["Location"], f"{studio}?remix={self.image.pk}")

    def test_nothing_private_of_another_team_reaches_her_form(self):
        response = self.studio(self.outsider)
        self.assertIsNone(response.context["form"].initial["source_image"])
        self.assertNotContains(response, "a private sketch")
        self.assertNotContains(response, self.private_source.thumb_url)
        self.assertContains(response, "Its source image (not one of your team")

    def test_the_teams_own_remix_keeps_its_source(self):
        response = self.studio(self.editor, project=self.project)
        self.assertEqual(response.context["form"].initial["source_image"], self.private_source.pk)
        self.assertEqual(response.context["import_notice"]["not_applied"], [])

    def test_a_project_only_image_stays_404_for_outsiders(self):
        self.assertEqual(self.remix(self.outsider, self.private).status_code, 404)
        self.assertEqual(self.studio(self.outsider, self.private).status_code, 404)
        self.assertEqual(self.studio(self.outsider, image=self.private).status_code, 404)

    def test_unlisted_images_are_not_remixable_by_outsiders(self):
        Image.objects.filter(pk=self.private.pk).update(
            visibility=Visibility.UNLISTED, share_token="s" * 32
        )
        self.assertEqual(self.remix(self.outsider, self.private).status_code, 404)

    def test_an_image_whose_job_is_gone_has_nothing_to_remix(self):
        GenerationJob.objects.filter(pk=self.job.pk).delete()
        self.assertEqual(self.remix(self.outsider).status_code, 404)
        self.assertEqual(self.studio(self.outsider).status_code, 404)

    def test_anonymous_users_are_sent_to_log_in(self):
        url = reverse("image_remix", args=[self.image.pk])
        response = self.client.get(url)
        self.assertRedirects(response, f"{reverse('login')}?next={url}",
                             fetch_redirect_response=False)

    def test_not_into_a_project_where_she_is_a_viewer(self):
        Membership.objects.create(team=self.team, user=self.outsider, role=Role.VIEWER)
        response = self.remix(self.outsider, project=self.project.pk)
        self.assertEqual(response.status_code, 403)
        # Bad project ids: 404, not a 500.
        self.assertEqual(self.remix(self.outsider, project="x").status_code, 404)
        self.assertEqual(self.remix(self.outsider, project="99999").status_code, 404)

    def test_a_viewer_without_any_project_to_generate_in_is_refused(self):
        self.assertEqual(self.remix(self.viewer).status_code, 403)

    def test_a_model_missing_from_her_library_is_named_and_hers_kept(self):
        TeamModelSetting.objects.create(team=self.other_team, model=self.model, is_enabled=False)
        hers = DiffusionModel.objects.create(name="her-model", source="/models/her")
        response = self.studio(self.outsider)
        self.assertEqual(response.context["form"].initial["model"], hers.pk)
        self.assertContains(
            response, "The model tiny-sd15 isn&#x27;t in Elsewhere&#x27;s library; kept her-model."
        )

    def test_loras_missing_from_her_library_are_named_the_same_file_is_used(self):
        lora = make_lora(self.team, self.owner, "inkwash", seed=1)
        other = make_lora(self.team, self.owner, "grain", seed=2)
        for position, (item, in_prompt) in enumerate([(lora, False), (other, False)]):
            JobLora.objects.create(job=self.job, lora=item, name=item.name, sha256=item.sha256,
                                   weight=0.7, position=position, in_prompt=in_prompt)
        JobLora.objects.create(job=self.job, lora=other, name="grain", sha256=other.sha256,
                               weight=1, position=2, in_prompt=True)
        hers = make_lora(self.other_team, self.outsider, "my-inkwash", seed=1)  # same file
        response = self.studio(self.outsider)
        picked = response.context["form"].initial["loras"]
        self.assertEqual(picked, [{"id": hers.pk, "weight": 0.7}])
        notes = response.context["import_notice"]["not_applied"]
        self.assertIn("The LoRA grain isn't in Elsewhere's library; left out.", notes)
        self.assertTrue(any("grain (in the prompt)" in note for note in notes))
        self.assertEqual(response.context["import_notice"]["level"], "warning")


class RemixOfTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.image = publish(make_image(make_job(cls.project, cls.editor, cls.model)))
        cls.private = make_image(make_job(cls.project, cls.editor, cls.model))

    def post(self, **extra):
        self.client.force_login(self.outsider)
        data = {"prompt": "my take", "model": self.model.pk, "steps": 4,
                "guidance_scale": 7, "width": 64, "height": 64, **extra}
        with mock.patch("generation.services.enqueue_generation"):
            with self.captureOnCommitCallbacks(execute=True):
                return self.client.post(reverse("job_create", args=[self.other_project.pk]), data)

    def test_the_job_records_what_it_remixes(self):
        self.assertEqual(self.post(remix_of=self.image.pk).status_code, 302)
        job = GenerationJob.objects.get(project=self.other_project)
        self.assertEqual(job.remix_of, self.image)
        # Made from it: its remix count on Explore says so.
        make_image(job)
        response = self.client.get(reverse("explore"))
        self.assertContains(response, 'title="1 image made from it"')

    def test_an_image_she_may_not_see_is_a_field_error_and_no_job(self):
        for value in (self.private.pk, 99999):
            with self.subTest(value=value):
                response = self.post(remix_of=value)
                self.assertEqual(response.status_code, 422)
                self.assertIn("The image you remixed is gone",
                              response.context["form"].errors["remix_of"][0])
                self.assertContains(response, "The image you remixed is gone", status_code=422)
        self.assertFalse(GenerationJob.objects.filter(project=self.other_project).exists())


class LineageGraphTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.root = make_image(make_job(cls.project, cls.editor, cls.model, prompt="the root"))

    def child_of(self, parent, project=None, field="source_image", **fields):
        project = project or self.project
        mode = JobMode.IMG2IMG if field == "source_image" else JobMode.TXT2IMG
        return make_image(make_job(project, self.editor, self.model, mode=mode,
                                   **{field: parent}, **fields))

    def lineage(self, image, user=None):
        self.client.force_login(user or self.viewer)
        response = self.client.get(image.get_absolute_url())
        self.assertEqual(response.status_code, 200)
        return response, response.context["lineage"]

    def test_ancestors_with_their_edges(self):
        remix = self.child_of(self.root, field="remix_of")
        control = self.child_of(remix, field="control_image")
        image = make_image(make_job(self.project, self.editor, self.model,
                                    mode=JobMode.IMG2IMG, source_image=control,
                                    ip_adapter_image=self.root))
        response, lineage = self.lineage(image)
        columns = [[(n.state, n.kind, n.image) for n in c.nodes] for c in lineage.columns]
        self.assertEqual(columns, [
            [("image", "remix", self.root)],
            [("image", "control", remix)],
            [("image", "source", control), ("image", "image prompt", self.root)],
            [("current", "", image)],
        ])
        self.assertEqual([edge.kind for edge in lineage.edges],
                         ["remix", "control", "source", "image prompt"])
        for label in ("source", "remix", "control", "image prompt"):
            self.assertContains(response, f">{label}</text>")
        self.assertContains(response, f'href="{remix.get_absolute_url()}"')

    def test_hidden_ancestors_are_counted_never_described_and_end_the_walk(self):
        grandparent = publish(make_image(make_job(self.other_project, self.outsider, self.model,
                                                  prompt="her public start")))
        hers = self.child_of(grandparent, project=self.other_project, prompt="her secret")
        mine = self.child_of(hers, field="remix_of")
        response, lineage = self.lineage(mine)
        self.assertEqual([[n.state for n in c.nodes] for c in lineage.columns],
                         [["hidden"], ["current"]])
        self.assertContains(response, "An image not shared with you.")
        for secret in ("her secret", "her public start", hers.get_absolute_url()):
            self.assertNotContains(response, secret)

    def test_deleted_and_uploaded_sources(self):
        from gallery.deletion.services import image_delete

        parent = self.child_of(self.root)
        child = self.child_of(parent)
        image_delete(image=parent, user=self.owner)
        response, lineage = self.lineage(child)
        self.assertEqual(lineage.columns[0].nodes[0].state, "deleted")
        self.assertContains(response, "A deleted image.")
        upload = make_image(make_job(self.project, self.editor, self.model, mode=JobMode.IMG2IMG,
                                     source_upload="uploads/1/a.png"))
        self.assertContains(self.lineage(upload)[0], "An uploaded image.")

    def test_descendants_two_levels_hidden_ones_counted(self):
        child = self.child_of(self.root, field="remix_of")
        grandchild = self.child_of(child)
        self.child_of(grandchild)  # a third level: not drawn
        self.child_of(self.root, project=self.other_project, prompt="her remix")
        response, lineage = self.lineage(self.root)
        self.assertEqual([[n.image for n in c.nodes] for c in lineage.columns],
                         [[self.root], [child], [grandchild]])
        self.assertEqual((lineage.children_count, lineage.children_hidden), (1, 1))
        self.assertEqual(lineage.remix_count, 2)
        self.assertContains(response, "1 not shared")
        self.assertNotContains(response, "her remix")

    def test_only_hidden_descendants_are_a_count(self):
        self.child_of(self.root, project=self.other_project, field="remix_of")
        response, lineage = self.lineage(self.root)
        self.assertEqual([len(column.nodes) for column in lineage.columns], [1, 0])
        self.assertEqual(lineage.columns[1].hidden, 1)
        self.assertContains(response, "1 image made from it, none shared with you.")

    def test_public_images_show_their_remix_count(self):
        publish(self.root)
        for _ in range(3):
            self.child_of(self.root, field="remix_of")
        self.client.logout()
        response = self.client.get(self.root.get_absolute_url())
        self.assertContains(response, "3 remixes")

    def ancestor_queries(self, depth):
        image = self.root
        for _ in range(depth):
            image = self.child_of(image, field="remix_of")
        self.client.force_login(self.viewer)
        with CaptureQueriesContext(connection) as queries:
            self.client.get(image.get_absolute_url())
        return len(queries)

    def test_one_query_per_ancestor_level_up_to_the_cap(self):
        self.assertEqual(self.ancestor_queries(6) - self.ancestor_queries(3), 2)
        self.assertEqual(self.ancestor_queries(9), self.ancestor_queries(6))

    def test_descendants_cost_the_same_however_many(self):
        counts = []
        for total in (5, 30):
            while self.root.derived_jobs.count() < total:
                child = self.child_of(self.root)
                self.child_of(child, field="remix_of")
            self.client.force_login(self.viewer)
            with CaptureQueriesContext(connection) as queries:
                response = self.client.get(self.root.get_absolute_url())
            self.assertEqual(response.context["lineage"].children_count, total)
            counts.append(len(queries))
        self.assertEqual(counts[0], counts[1])
