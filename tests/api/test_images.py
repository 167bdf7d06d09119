"""/api/v1 images: list, get with metadata and lineage, the file with or without metadata."""

import io

from PIL import Image as PILImage

from generation.models import GenerationJob
from tests.api.base import ApiTestCase
from tests.base import make_image, make_job


class ImageTests(ApiTestCase):
    def setUp(self):
        self.secret = self.token(self.viewer)
        self.first = make_image(make_job(self.project, self.editor, self.model))
        # Made from the first: img2img with it as the source.
        child_job = make_job(self.project, self.editor, self.model, source_image=self.first)
        self.child = make_image(child_job)
        self.theirs = make_image(make_job(self.other_project, self.outsider, self.model))

    def test_lists_the_teams_images_newest_first(self):
        body = self.api("get", "/images", self.secret).json()
        self.assertEqual([image["id"] for image in body["items"]], [self.child.pk, self.first.pk])
        page = self.api("get", "/images?limit=1", self.secret).json()
        self.assertEqual(len(page["items"]), 1)
        rest = self.api("get", f"/images?limit=1&cursor={page['next_cursor']}", self.secret)
        self.assertEqual(rest.json()["items"][0]["id"], self.first.pk)

    def test_filters_by_job(self):
        body = self.api("get", f"/images?job={self.first.job_id}", self.secret).json()
        self.assertEqual([image["id"] for image in body["items"]], [self.first.pk])

    def test_get_has_the_recipe_and_lineage(self):
        body = self.api("get", f"/images/{self.child.pk}", self.secret).json()
        self.assertEqual(body["model"], self.model.name)
        self.assertIn("Steps: 4", body["parameters"])
        self.assertEqual(
            body["parents"], [{"relation": "source", "state": "image", "image_id": self.first.pk}]
        )
        parent = self.api("get", f"/images/{self.first.pk}", self.secret).json()
        self.assertEqual(parent["children"], [self.child.pk])

    def test_lineage_hides_what_the_token_may_not_see(self):
        # The user sees both teams; a token for one of them sees the other as hidden.
        from studio.accounts.models import Membership, Role

        Membership.objects.create(team=self.other_team, user=self.viewer, role=Role.VIEWER)
        GenerationJob.objects.filter(pk=self.child.job_id).update(source_image=self.theirs)
        body = self.api("get", f"/images/{self.child.pk}", self.secret).json()
        self.assertEqual(body["parents"], [{"relation": "source", "state": "hidden",
                                            "image_id": None}])

    def test_the_file_with_and_without_metadata(self):
        with_metadata = self.api("get", f"/images/{self.first.pk}/file", self.secret)
        self.assertEqual(with_metadata["Content-Type"], "image/png")
        png = b"".join(with_metadata.streaming_content)
        self.assertEqual(PILImage.open(io.BytesIO(png)).size, (64, 64))
        clean = self.api("get", f"/images/{self.first.pk}/file?metadata=false", self.secret)
        picture = PILImage.open(io.BytesIO(clean.content))
        self.assertEqual(picture.info.get("parameters"), None)
        download = self.api("get", f"/images/{self.first.pk}/file?download=true", self.secret)
        self.assertIn("attachment", download["Content-Disposition"])

    def test_other_teams_images_are_404(self):
        listed = [i["id"] for i in self.api("get", "/images", self.secret).json()["items"]]
        self.assertNotIn(self.theirs.pk, listed)
        for path in (f"/images/{self.theirs.pk}", f"/images/{self.theirs.pk}/file"):
            self.assert_problem(self.api("get", path, self.secret), 404)

    def test_bad_input_and_revoked_tokens(self):
        self.assert_problem(self.api("get", "/images?cursor=x", self.secret), 422, "cursor")
        self.assert_problem(self.api("get", "/images/abc", self.secret), 422, "image_id")
        from studio.api.models import ApiToken
        from studio.api.tokens import token_revoke

        token_revoke(token=ApiToken.objects.get(), by=self.viewer)
        self.assert_problem(self.api("get", f"/images/{self.first.pk}", self.secret), 401)
