"""The image detail page: every parameter, lineage, remix and both downloads."""

import io
import re

from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image as PILImage

from generation.models import JobMode
from generation.parameters_import.files import png_info
from studio.accounts.models import Membership, Project, Role
from tests.base import StudioTestCase, make_image, make_job


def png_with_parameters(size=(64, 48)):
    picture = PILImage.new("RGBA", size, (10, 200, 30, 255))
    picture.putpixel((3, 4), (250, 1, 2, 128))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", pnginfo=png_info(parameters="a fox\nSteps: 4",
                                                         spec={"seed": 42}))
    return buffer.getvalue()


class ImageDetailTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.source = make_image(make_job(cls.project, cls.editor, cls.model, prompt="the source"))
        cls.job = make_job(
            cls.project, cls.editor, cls.model, prompt="a fox, remixed", mode=JobMode.IMG2IMG,
            source_image=cls.source, strength=0.6, sampler="DPM++ 2M Karras", clip_skip=2,
            batch_size=2, seed=1000, hires_scale=1.5, hires_steps=6, hires_strength=0.4,
            negative_prompt="blurry",
        )
        cls.image = make_image(cls.job)
        cls.image.seed = 1001  # the batch's second image
        cls.image.negative_prompt = "blurry"
        cls.image.save()
        cls.child = make_image(
            make_job(cls.project, cls.owner, cls.model, prompt="child of it",
                     source_image=cls.image, mode=JobMode.IMG2IMG)
        )

    def detail(self, user=None, image=None):
        self.client.force_login(user or self.viewer)
        return self.client.get(reverse("image_detail", args=[(image or self.image).pk]))

    def test_every_parameter(self):
        response = self.detail()
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))
        for expected in (
            "a fox, remixed", "Negative blurry", "Model tiny-sd15", "Mode Image to image",
            "Size 64×64", "Seed 1001", "Steps 4", "Sampler DPM++ 2M Karras", "CFG scale 7.0",
            "Clip skip 2", "Denoising strength 0.6", "Hires fix ×1.5, 6 steps, strength 0.4",
            "Batch 2 images, seeds 1000–1001", f"Job #{self.job.pk} · Queued",
            "Project Posters in Alpha", "Made by carol",
        ):
            with self.subTest(expected=expected):
                self.assertIn(expected, text)
        self.assertContains(response, "Steps: 4")  # the infotext, folded

    def test_outpaint_sides(self):
        job = make_job(self.project, self.editor, self.model, mode=JobMode.OUTPAINT,
                       outpaint_left=32, outpaint_top=16)
        response = self.detail(image=make_image(job))
        self.assertContains(response, "left 32, right 0, top 16, bottom 0 px")

    def test_an_image_without_its_job(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        image.job.delete()
        response = self.detail(image=image)
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "Made from: unknown, its job is gone.")
        self.assertNotContains(response, reverse("image_remix", args=[image.pk]))

    def test_downloads_are_linked(self):
        response = self.detail()
        self.assertContains(response, f'href="{self.image.download_url()}"')
        self.assertContains(response, f'href="{self.image.clean_download_url()}"')


class LineageTestCase(ImageDetailTestCase):
    def test_source_and_children(self):
        response = self.detail()
        self.assertContains(response, f'href="{self.source.get_absolute_url()}"')
        self.assertContains(response, f'href="{self.child.get_absolute_url()}"')
        self.assertEqual(response.context["lineage"].children_count, 1)

    def test_the_source_page_lists_this_image_as_made_from_it(self):
        response = self.detail(image=self.source)
        self.assertEqual(response.context["lineage"].children(), [self.image])
        self.assertContains(response, "Made from text alone.")

    def test_images_the_viewer_may_not_see_stay_hidden(self):
        # Her image used as a source here (as a member then), and remixed in her team.
        hers = make_image(make_job(self.other_project, self.outsider, self.model,
                                   prompt="her secret"))
        mine = make_image(make_job(self.project, self.editor, self.model, source_image=hers))
        make_image(make_job(self.other_project, self.outsider, self.model, source_image=mine,
                            prompt="her other secret"))
        response = self.detail(image=mine)
        self.assertContains(response, "An image not shared with you.")
        self.assertNotContains(response, "secret")
        self.assertEqual(response.context["lineage"].children_count, 0)
        self.assertEqual(response.context["lineage"].children_hidden, 1)

    def test_an_upload_source(self):
        job = make_job(self.project, self.editor, self.model, mode=JobMode.IMG2IMG,
                       source_upload="uploads/1/abc.png")
        self.assertContains(self.detail(image=make_image(job)), "An uploaded image.")

    def test_query_count_is_constant_in_the_number_of_descendants(self):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        counts = []
        for total in (10, 100):
            existing = self.image.derived_jobs.count()
            for n in range(total - existing):
                make_image(make_job(self.project, self.editor, self.model,
                                    source_image=self.image, prompt=f"variation {n}"))
            self.client.force_login(self.editor)
            with CaptureQueriesContext(connection) as queries:
                response = self.client.get(reverse("image_detail", args=[self.image.pk]))
            self.assertEqual(response.context["lineage"].children_count, total)
            counts.append(len(queries))
        # Issue #19: the like count and the like are one query, the favourite another.
        self.assertEqual(counts, [20, 20])


class RemixTestCase(ImageDetailTestCase):
    def test_editors_get_a_remix_form_viewers_without_a_project_do_not(self):
        remix = reverse("image_remix", args=[self.image.pk])
        self.assertContains(self.detail(self.editor), remix)
        self.assertNotContains(self.detail(self.viewer), remix)

    def test_remix_opens_the_studio_with_every_parameter_and_this_images_seed(self):
        self.client.force_login(self.editor)
        response = self.client.get(reverse("image_remix", args=[self.image.pk]))
        studio = reverse("project_studio", args=[self.project.pk])
        self.assertRedirects(
            response, f"{studio}?remix={self.image.pk}", fetch_redirect_response=False
        )
        form = self.client.get(response["Location"]).context["form"]
        expected = {
            **self.job.parameters(), "seed": 1001, "batch_size": 1, "remix_of": self.image.pk
        }
        for name, value in expected.items():
            with self.subTest(field=name):
                self.assertEqual(form.initial[name], value)

    def test_remix_into_another_project_the_user_generates_in(self):
        Membership.objects.create(team=self.other_team, user=self.viewer, role=Role.EDITOR)
        response = self.detail(self.viewer)
        self.assertContains(response, reverse("image_remix", args=[self.image.pk]))
        response = self.client.get(
            reverse("image_remix", args=[self.image.pk]), {"project": self.other_project.pk}
        )
        studio = reverse("project_studio", args=[self.other_project.pk])
        self.assertEqual(response["Location"], f"{studio}?remix={self.image.pk}")
        self.assertEqual(self.client.get(response["Location"]).status_code, 200)

    def test_remix_is_refused_where_the_user_may_not_generate(self):
        self.client.force_login(self.viewer)
        url = reverse("image_remix", args=[self.image.pk])
        self.assertEqual(self.client.get(url).status_code, 403)
        self.client.force_login(self.editor)
        self.assertEqual(
            self.client.get(url, {"project": self.other_project.pk}).status_code, 404
        )
        self.assertEqual(self.client.get(url, {"project": "x"}).status_code, 404)

    def test_a_mismatched_image_is_ignored_by_the_studio(self):
        self.client.force_login(self.editor)
        studio = reverse("project_studio", args=[self.project.pk])
        response = self.client.get(studio, {"duplicate": self.job.pk, "image": self.child.pk})
        self.assertEqual(response.context["form"].initial["seed"], 1000)
        self.assertEqual(response.context["form"].initial["batch_size"], 2)


class DownloadTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.image = make_image(make_job(cls.project, cls.editor, cls.model))
        cls.image.file.save("x.png", ContentFile(png_with_parameters()), save=True)

    def test_original_keeps_its_parameters(self):
        self.client.force_login(self.viewer)
        response = self.client.get(self.image.download_url())
        self.assertIn("attachment", response["Content-Disposition"])
        png = PILImage.open(io.BytesIO(b"".join(response.streaming_content)))
        self.assertEqual(png.text["parameters"], "a fox\nSteps: 4")

    def test_without_metadata_is_the_same_pixels_and_nothing_else(self):
        self.client.force_login(self.viewer)
        response = self.client.get(self.image.clean_download_url())
        self.assertEqual(response["Content-Type"], "image/png")
        self.assertIn("attachment", response["Content-Disposition"])
        self.assertIn(f"image-{self.image.pk}-clean.png", response["Content-Disposition"])
        self.assertIn("private", response["Cache-Control"])
        data = response.content
        for chunk in (b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"iCCP", b"tIME"):
            self.assertNotIn(chunk, data)
        clean = PILImage.open(io.BytesIO(data))
        self.assertEqual(clean.text, {})
        original = PILImage.open(io.BytesIO(png_with_parameters()))
        self.assertEqual(clean.mode, "RGBA")
        self.assertEqual(clean.tobytes(), original.convert("RGBA").tobytes())

    def test_outsiders_get_404(self):
        self.client.force_login(self.outsider)
        for url in (self.image.download_url(), self.image.clean_download_url()):
            with self.subTest(url=url):
                self.assertEqual(self.client.get(url).status_code, 404)


class OtherProjectTestCase(StudioTestCase):
    def test_remix_projects_are_the_users_editor_projects(self):
        from gallery.detail import remix_projects

        extra = Project.objects.create(team=self.other_team, name="Mine too")
        Membership.objects.create(team=self.other_team, user=self.viewer, role=Role.VIEWER)
        self.assertEqual(list(remix_projects(self.viewer)), [])
        self.assertEqual(set(remix_projects(self.outsider)), {self.other_project, extra})
