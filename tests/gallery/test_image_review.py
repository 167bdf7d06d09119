"""Team review: editors mark an image approved, rejected or unreviewed; the image's team
comments on it (authors delete their own, editors any); galleries filter by review state."""

import re

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from gallery.models import Image, ImageComment, ReviewStatus, Visibility
from gallery.review.services import MAX_COMMENT_LENGTH
from tests.base import StudioTestCase, make_image, make_job

EDITORS = ("owner", "admin", "editor")
HTMX = {"HTTP_HX_REQUEST": "true"}


def ids_in(response):
    return [int(pk) for pk in re.findall(r'data-image-id="(\d+)"', response.content.decode())]


class ReviewTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.image = make_image(make_job(cls.project, cls.editor, cls.model, prompt="a red fox"))

    def post(self, name, args, data, user=None, htmx=False):
        self.client.force_login(user or self.editor)
        return self.client.post(reverse(name, args=args), data, **(HTMX if htmx else {}))

    def review(self, status, user=None, htmx=True):
        return self.post("image_review", [self.image.pk], {"status": status}, user, htmx)

    def comment(self, body, user=None, htmx=True):
        return self.post("image_comment_create", [self.image.pk], {"body": body}, user, htmx)


class ReviewStateTestCase(ReviewTestCase):
    def test_editors_approve_and_reject_viewers_may_not_others_get_404(self):
        for role, user in self.users_by_role().items():
            with self.subTest(role=role):
                response = self.review(ReviewStatus.APPROVED, user)
                self.image.refresh_from_db()
                if role in EDITORS:
                    self.assertEqual(response.status_code, 200)
                    self.assertEqual(self.image.review_status, ReviewStatus.APPROVED)
                    self.assertEqual(self.image.reviewed_by, user)
                    self.assertIsNotNone(self.image.reviewed_at)
                    Image.objects.update(review_status=ReviewStatus.UNREVIEWED)
                else:
                    self.assertEqual(response.status_code, 403 if role == "viewer" else 404)
                    self.assertEqual(self.image.review_status, ReviewStatus.UNREVIEWED)

    def test_outsiders_get_404_even_on_a_public_image(self):
        Image.objects.filter(pk=self.image.pk).update(
            visibility=Visibility.PUBLIC, moderation_status="passed"
        )
        self.assertEqual(self.review(ReviewStatus.REJECTED, self.outsider).status_code, 404)
        self.assertEqual(self.comment("nice", self.outsider).status_code, 404)
        self.assertFalse(ImageComment.objects.exists())

    def test_anonymous_users_are_sent_to_log_in(self):
        self.comment("a note")
        comment = ImageComment.objects.get()
        self.client.logout()
        for url in [
            reverse("image_review", args=[self.image.pk]),
            reverse("image_comment_create", args=[self.image.pk]),
            reverse("image_comment_delete", args=[comment.pk]),
        ]:
            with self.subTest(url=url):
                response = self.client.post(url, {"status": "approved", "body": "hi"})
                self.assertIn(reverse("login"), response["Location"])
        self.image.refresh_from_db()
        self.assertEqual(self.image.review_status, ReviewStatus.UNREVIEWED)
        self.assertEqual(list(ImageComment.objects.values_list("body", flat=True)), ["a note"])

    def test_the_htmx_answer_is_the_review_section(self):
        response = self.review(ReviewStatus.REJECTED)
        self.assertContains(response, 'id="review"')
        self.assertContains(response, "Rejected by carol")
        self.assertNotContains(response, "<html")

    def test_clearing_forgets_who_reviewed(self):
        self.review(ReviewStatus.APPROVED)
        self.review(ReviewStatus.UNREVIEWED)
        self.image.refresh_from_db()
        self.assertEqual(
            (self.image.review_status, self.image.reviewed_by, self.image.reviewed_at),
            (ReviewStatus.UNREVIEWED, None, None),
        )

    def test_an_unknown_state_is_refused_naming_the_choices(self):
        response = self.review("maybe")
        self.assertEqual(response.status_code, 422)
        self.assertContains(
            response, "Review state: choose one of unreviewed, approved, rejected.",
            status_code=422,
        )
        self.image.refresh_from_db()
        self.assertEqual(self.image.review_status, ReviewStatus.UNREVIEWED)

    def test_without_htmx_it_redirects_to_the_image_with_a_message(self):
        response = self.review(ReviewStatus.APPROVED, htmx=False)
        self.assertRedirects(
            response, self.image.get_absolute_url(), fetch_redirect_response=False
        )
        self.assertContains(self.client.get(response["Location"]), "Review: approved.")
        response = self.review("nope", htmx=False)
        page = self.client.get(response["Location"])
        self.assertContains(page, "Review state: choose one of")

    def test_the_image_page_shows_the_state_and_buttons_to_editors_only(self):
        self.review(ReviewStatus.APPROVED)
        url = reverse("image_review", args=[self.image.pk])
        self.client.force_login(self.editor)
        page = self.client.get(self.image.get_absolute_url())
        self.assertContains(page, f'hx-post="{url}"')
        self.client.force_login(self.viewer)
        page = self.client.get(self.image.get_absolute_url())
        self.assertNotContains(page, f'hx-post="{url}"')
        self.assertContains(page, "Approved by carol")

    def test_grids_show_approved_and_rejected_badges(self):
        self.review(ReviewStatus.REJECTED)
        response = self.client.get(reverse("project_gallery", args=[self.project.pk]))
        self.assertContains(response, 'class="badge thumb-review badge-danger">Rejected</span>')


class ReviewFilterTestCase(ReviewTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.approved = make_image(make_job(cls.project, cls.editor, cls.model))
        cls.rejected = make_image(make_job(cls.project, cls.editor, cls.model))
        Image.objects.filter(pk=cls.approved.pk).update(review_status=ReviewStatus.APPROVED)
        Image.objects.filter(pk=cls.rejected.pk).update(review_status=ReviewStatus.REJECTED)

    def gallery(self, **params):
        self.client.force_login(self.viewer)
        return self.client.get(reverse("project_gallery", args=[self.project.pk]), params)

    def test_filter_by_review_state(self):
        for status, expected in [
            ("approved", [self.approved.pk]),
            ("rejected", [self.rejected.pk]),
            ("unreviewed", [self.image.pk]),
            ("", [self.rejected.pk, self.approved.pk, self.image.pk]),
        ]:
            with self.subTest(status=status):
                self.assertEqual(ids_in(self.gallery(review=status)), expected)

    def test_the_team_gallery_filters_too(self):
        self.client.force_login(self.viewer)
        response = self.client.get(
            reverse("team_gallery", args=[self.team.pk]), {"review": "approved"}
        )
        self.assertEqual(ids_in(response), [self.approved.pk])

    def test_an_unknown_state_is_an_error_on_that_filter(self):
        response = self.gallery(review="maybe")
        self.assertContains(response, "Review: Select a valid choice.")
        self.assertEqual(len(ids_in(response)), 3)


class CommentTestCase(ReviewTestCase):
    def test_every_team_member_may_comment_others_get_404(self):
        for role, user in self.users_by_role().items():
            with self.subTest(role=role):
                response = self.comment(f"from {role}", user)
                if role == "outsider":
                    self.assertEqual(response.status_code, 404)
                else:
                    self.assertEqual(response.status_code, 200)
                    self.assertContains(response, f"from {role}")
        self.assertEqual(
            list(ImageComment.objects.values_list("author__username", flat=True)),
            ["alice", "bob", "carol", "dave"],
        )

    def test_empty_and_too_long_comments_are_refused(self):
        for body, message in [
            ("   ", "Comment: write something first."),
            ("x" * (MAX_COMMENT_LENGTH + 1),
             f"Comment: at most {MAX_COMMENT_LENGTH} characters (this one has"),
        ]:
            with self.subTest(message=message):
                response = self.comment(body)
                self.assertContains(response, message, status_code=422)
        self.assertFalse(ImageComment.objects.exists())
        # What was typed stays in the box to be fixed.
        self.assertContains(self.comment("y" * 2001), "y" * 2001, status_code=422)

    def test_comments_are_shown_in_order_on_the_image_page_to_members_only(self):
        self.comment("first", self.viewer)
        self.comment("second <b>bold</b>", self.owner)
        self.client.force_login(self.viewer)
        page = self.client.get(self.image.get_absolute_url()).content.decode()
        self.assertLess(page.index("first"), page.index("second"))
        self.assertIn("second &lt;b&gt;bold&lt;/b&gt;", page)
        Image.objects.filter(pk=self.image.pk).update(
            visibility=Visibility.PUBLIC, moderation_status="passed"
        )
        self.client.force_login(self.outsider)
        page = self.client.get(self.image.get_absolute_url())
        self.assertEqual(page.status_code, 200)
        self.assertNotContains(page, "first")
        self.assertNotContains(page, 'id="comments"')

    def test_authors_delete_their_own_editors_any_viewers_not_others(self):
        self.comment("by the viewer", self.viewer)
        self.comment("by the owner", self.owner)
        by_viewer, by_owner = ImageComment.objects.order_by("pk")

        def delete(comment, user):
            return self.post("image_comment_delete", [comment.pk], {}, user, htmx=True)

        self.assertEqual(delete(by_owner, self.viewer).status_code, 403)
        self.assertEqual(delete(by_viewer, self.outsider).status_code, 404)
        self.assertEqual(ImageComment.objects.count(), 2)
        self.assertEqual(delete(by_viewer, self.viewer).status_code, 200)
        response = delete(by_owner, self.editor)
        self.assertContains(response, "No comments yet.")
        self.assertFalse(ImageComment.objects.exists())
        self.assertEqual(delete(by_owner, self.editor).status_code, 404)

    def test_delete_buttons_only_where_allowed(self):
        self.comment("by the viewer", self.viewer)
        self.comment("by the owner", self.owner)
        by_viewer, by_owner = ImageComment.objects.order_by("pk")
        response = self.comment("by the admin", self.admin)
        self.assertContains(response, reverse("image_comment_delete", args=[by_owner.pk]))
        response = self.comment("again", self.viewer)
        self.assertContains(response, reverse("image_comment_delete", args=[by_viewer.pk]))
        self.assertNotContains(response, reverse("image_comment_delete", args=[by_owner.pk]))

    def test_comments_of_a_deleted_image_are_gone_with_it(self):
        self.comment("before", self.viewer)
        Image.objects.filter(pk=self.image.pk).update(deleted_at="2026-01-01T00:00:00Z")
        comment = ImageComment.objects.get()
        self.assertEqual(self.comment("after").status_code, 404)
        response = self.post("image_comment_delete", [comment.pk], {}, self.editor, htmx=True)
        self.assertEqual(response.status_code, 404)

    def test_without_htmx_it_redirects_back_to_the_image(self):
        response = self.comment("plain form", htmx=False)
        self.assertRedirects(
            response, self.image.get_absolute_url(), fetch_redirect_response=False
        )
        self.assertTrue(ImageComment.objects.filter(body="plain form").exists())


class ReviewQueryCountTestCase(ReviewTestCase):
    def test_image_page_constant_in_the_number_of_comments(self):
        counts = []
        for total in (10, 100):
            ImageComment.objects.bulk_create(
                ImageComment(image=self.image, author=self.viewer, body=f"note {n}")
                for n in range(total - ImageComment.objects.count())
            )
            self.client.force_login(self.editor)
            with CaptureQueriesContext(connection) as queries:
                response = self.client.get(self.image.get_absolute_url())
            self.assertEqual(len(response.context["comments"]), total)
            counts.append(len(queries))
        self.assertEqual(counts[0], counts[1])

    def test_filtered_gallery_constant_in_the_number_of_images(self):
        counts = []
        for total in (10, 100):
            for n in range(total - Image.objects.count()):
                image = make_image(make_job(self.project, self.editor, self.model))
                if n % 2:
                    Image.objects.filter(pk=image.pk).update(review_status="approved")
            self.client.force_login(self.viewer)
            url = reverse("project_gallery", args=[self.project.pk])
            with CaptureQueriesContext(connection) as queries:
                response = self.client.get(url, {"review": "approved"})
            self.assertEqual(response.status_code, 200)
            counts.append(len(queries))
        self.assertEqual(counts[0], counts[1])
