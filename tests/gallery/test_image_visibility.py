"""Image visibility, enforced on every page, fragment, file, thumbnail and download:
private to its project (default), team, anyone with the secret link, public (only after a
passed moderation scan). The authorisation matrix: owner / team members by role / another
team / anonymous, for every gallery URL."""

from unittest import mock

from django.urls import reverse

from gallery.models import Image, ModerationStatus, Visibility
from gallery.sharing import VisibilityRefused, image_set_visibility, image_share_link_reset
from gallery.thumbnails import image_thumbnails_make
from studio.accounts.models import Membership
from tests.base import StudioTestCase, make_image, make_job

MEMBERS = ("owner", "admin", "editor", "viewer")
EDITORS = ("owner", "admin", "editor")
HTMX = {"HTTP_HX_REQUEST": "true"}

# visibility, moderation status
STATES = {
    "project": (Visibility.PROJECT, ModerationStatus.PENDING),
    "team": (Visibility.TEAM, ModerationStatus.PENDING),
    "unlisted": (Visibility.UNLISTED, ModerationStatus.PENDING),
    "public": (Visibility.PUBLIC, ModerationStatus.PASSED),
    # Public once, then a scan failed (or never ran): as private as the project.
    "public-failed": (Visibility.PUBLIC, ModerationStatus.FAILED),
    "public-pending": (Visibility.PUBLIC, ModerationStatus.PENDING),
}


class VisibilityTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.job = make_job(cls.project, cls.editor, cls.model)
        cls.image = make_image(cls.job)
        image_thumbnails_make(image_id=cls.image.pk)
        Image.objects.filter(pk=cls.image.pk).update(share_token="s" * 32)
        cls.image.refresh_from_db()

    def set_state(self, state):
        visibility, status = STATES[state]
        Image.objects.filter(pk=self.image.pk).update(
            visibility=visibility, moderation_status=status
        )

    def login(self, who):
        self.client.logout()
        if who != "anonymous":
            self.client.force_login(self.users_by_role()[who])


class AuthorisationMatrixTestCase(VisibilityTestCase):
    def image_urls(self):
        pk = self.image.pk
        return {
            "detail": reverse("image_detail", args=[pk]),
            "card": reverse("image_card", args=[pk]),
            "file": reverse("image_file", args=[pk]),
            "download": self.image.download_url(),
            "clean download": reverse("image_download_clean", args=[pk]),
            "thumbnail 256": reverse("image_thumbnail", args=[pk, 256]),
            "thumbnail 512": reverse("image_thumbnail", args=[pk, 512]),
        }

    def shared_urls(self):
        token = self.image.share_token
        return {
            "shared page": reverse("image_shared", args=[token]),
            "shared file": reverse("image_shared_file", args=[token]),
            "shared download": reverse("image_shared_file", args=[token]) + "?download=1",
            "shared clean download": reverse("image_shared_clean", args=[token]),
            "shared thumbnail": reverse("image_shared_thumbnail", args=[token, 256]),
        }

    def gallery_urls(self):
        project_gallery = reverse("project_gallery", args=[self.project.pk])
        return {
            "project gallery": (project_gallery, {}, {}),
            "project gallery results": (project_gallery, {"q": "light"}, HTMX),
            "project gallery next page": (project_gallery, {"cursor": "1.1"}, HTMX),
            "team gallery": (reverse("team_gallery", args=[self.team.pk]), {}, {}),
            "team gallery results": (
                reverse("team_gallery", args=[self.team.pk]), {"mode": "txt2img"}, HTMX
            ),
        }

    def assert_login_redirect(self, response):
        self.assertEqual(response.status_code, 302)
        self.assertTrue(response["Location"].startswith(reverse("login")))

    def test_image_urls(self):
        for state in STATES:
            self.set_state(state)
            visible_to_all = state == "public"
            for who in (*MEMBERS, "outsider", "anonymous"):
                self.login(who)
                for name, url in self.image_urls().items():
                    with self.subTest(state=state, who=who, url=name):
                        response = self.client.get(url)
                        if who in MEMBERS or visible_to_all:
                            self.assertEqual(response.status_code, 200)
                        elif who == "anonymous":
                            self.assert_login_redirect(response)
                        else:
                            self.assertEqual(response.status_code, 404)

    def test_secret_link_urls(self):
        for state in STATES:
            self.set_state(state)
            open_link = state in ("unlisted", "public")
            for who in (*MEMBERS, "outsider", "anonymous"):
                self.login(who)
                for name, url in self.shared_urls().items():
                    with self.subTest(state=state, who=who, url=name):
                        status = self.client.get(url).status_code
                        self.assertEqual(status, 200 if open_link else 404)

    def test_a_wrong_token_is_404(self):
        self.set_state("unlisted")
        for url in (reverse("image_shared", args=["s" * 31]),
                    reverse("image_shared_file", args=["x" * 32])):
            with self.subTest(url=url):
                self.assertEqual(self.client.get(url).status_code, 404)

    def test_gallery_pages_are_for_members_whatever_the_visibility(self):
        for state in STATES:
            self.set_state(state)
            for who in (*MEMBERS, "outsider", "anonymous"):
                self.login(who)
                for name, (url, params, headers) in self.gallery_urls().items():
                    with self.subTest(state=state, who=who, url=name):
                        response = self.client.get(url, params, **headers)
                        if who in MEMBERS:
                            self.assertEqual(response.status_code, 200)
                        elif who == "anonymous":
                            self.assert_login_redirect(response)
                        else:
                            self.assertEqual(response.status_code, 404)

    def test_my_images_lists_only_ones_own(self):
        self.set_state("public")
        for who in (*MEMBERS, "outsider"):
            self.login(who)
            with self.subTest(who=who):
                response = self.client.get(reverse("my_images"))
                shown = f'data-image-id="{self.image.pk}"' in response.content.decode()
                self.assertEqual(shown, who == "editor")
        self.login("anonymous")
        self.assert_login_redirect(self.client.get(reverse("my_images")))

    def test_remix(self):
        url = reverse("image_remix", args=[self.image.pk])
        for state in STATES:
            self.set_state(state)
            for who in (*MEMBERS, "outsider", "anonymous"):
                self.login(who)
                with self.subTest(state=state, who=who):
                    response = self.client.get(url)
                    if who in EDITORS:
                        self.assertEqual(response.status_code, 302)
                        self.assertIn(f"remix={self.image.pk}", response["Location"])
                    elif who == "outsider" and state == "public":
                        # Public work is remixable by anyone, into their own project.
                        studio = reverse("project_studio", args=[self.other_project.pk])
                        self.assertEqual(response["Location"], f"{studio}?remix={self.image.pk}")
                    elif who == "viewer":
                        self.assertEqual(response.status_code, 403)
                    elif who == "anonymous":
                        self.assert_login_redirect(response)
                    else:
                        self.assertEqual(response.status_code, 404)

    def test_changing_visibility_and_the_link(self):
        for name, data in (
            ("visibility", {"visibility": "team"}),
            ("share reset", {}),
        ):
            url_name = "image_visibility" if name == "visibility" else "image_share_reset"
            url = reverse(url_name, args=[self.image.pk])
            for state in ("project", "unlisted", "public"):
                for who in (*MEMBERS, "outsider", "anonymous"):
                    self.set_state(state)
                    self.login(who)
                    with self.subTest(url=name, state=state, who=who):
                        response = self.client.post(url, data, **HTMX)
                        if who in EDITORS:
                            self.assertEqual(response.status_code, 200)
                        elif who == "viewer":
                            self.assertEqual(response.status_code, 403)
                        elif who == "anonymous":
                            self.assert_login_redirect(response)
                        else:
                            self.assertEqual(response.status_code, 404)

    def test_get_is_not_allowed_on_changes(self):
        self.login("owner")
        url = reverse("image_visibility", args=[self.image.pk])
        self.assertEqual(self.client.get(url).status_code, 405)


class TeamVisibilityTestCase(VisibilityTestCase):
    def test_team_members_see_a_team_image_even_without_the_project(self):
        # Projects are open to their whole team today; the rule holds on its own too.
        self.set_state("team")
        image = Image.objects.select_related("project__team").get(pk=self.image.pk)
        with mock.patch("studio.permissions.can", return_value=False):
            self.assertTrue(image.may_view(self.viewer))
            self.assertFalse(image.may_view(self.outsider))


class VisibleToTestCase(VisibilityTestCase):
    def test_the_queryset_agrees_with_may_view(self):
        from django.contrib.auth.models import AnonymousUser

        for state in STATES:
            self.set_state(state)
            for who in (*MEMBERS, "outsider"):
                user = self.users_by_role()[who]
                with self.subTest(state=state, who=who):
                    image = Image.objects.get(pk=self.image.pk)
                    in_queryset = Image.objects.visible_to(user).filter(pk=image.pk).exists()
                    self.assertEqual(in_queryset, image.may_view(user))
                    self.assertEqual(in_queryset, who in MEMBERS or state == "public")
            anonymous = AnonymousUser()
            with self.subTest(state=state, who="anonymous"):
                self.assertEqual(
                    Image.objects.visible_to(anonymous).filter(pk=self.image.pk).exists(),
                    state == "public",
                )


class SetVisibilityTestCase(VisibilityTestCase):
    def post(self, visibility, user=None, htmx=True):
        self.client.force_login(user or self.editor)
        headers = HTMX if htmx else {}
        return self.client.post(
            reverse("image_visibility", args=[self.image.pk]), {"visibility": visibility},
            **headers,
        )

    def fresh(self):
        return Image.objects.get(pk=self.image.pk)

    def test_default_is_private_to_the_project_and_pending(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        self.assertEqual(image.visibility, Visibility.PROJECT)
        self.assertEqual(image.moderation_status, ModerationStatus.PENDING)
        self.assertIsNone(image.share_token)

    def test_editors_set_team_and_unlisted(self):
        response = self.post("team")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(self.fresh().visibility, Visibility.TEAM)
        self.assertContains(response, 'id="sharing"')
        self.assertNotContains(response, "<html")

    def test_public_is_refused_until_moderation_passed(self):
        response = self.post("public")
        self.assertEqual(response.status_code, 422)
        self.assertContains(response, "Public images must pass a moderation scan first",
                            status_code=422)
        self.assertEqual(self.fresh().visibility, Visibility.PROJECT)
        Image.objects.filter(pk=self.image.pk).update(moderation_status=ModerationStatus.FAILED)
        response = self.post("public")
        self.assertContains(response, "failed its moderation scan", status_code=422)
        Image.objects.filter(pk=self.image.pk).update(moderation_status=ModerationStatus.PASSED)
        self.assertEqual(self.post("public").status_code, 200)
        self.assertEqual(self.fresh().visibility, Visibility.PUBLIC)

    def test_the_page_says_public_needs_moderation(self):
        self.client.force_login(self.editor)
        response = self.client.get(self.image.get_absolute_url())
        self.assertContains(response, "once a moderation scan passed")
        self.assertContains(response, "Moderation scan: not scanned yet.")

    def test_unknown_values_are_refused(self):
        response = self.post("everyone")
        self.assertContains(response, "Choose who may see it", status_code=422)
        self.assertEqual(self.fresh().visibility, Visibility.PROJECT)

    def test_without_htmx_it_redirects_with_a_message(self):
        response = self.post("public", htmx=False)
        self.assertRedirects(
            response, self.image.get_absolute_url(), fetch_redirect_response=False
        )
        page = self.client.get(self.image.get_absolute_url())
        self.assertContains(page, "Public images must pass a moderation scan first")

    def test_unlisted_makes_a_link_once_and_keeps_it(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        image_set_visibility(image=image, user=self.editor, visibility=Visibility.UNLISTED)
        token = image.share_token
        self.assertGreaterEqual(len(token), 32)
        image_set_visibility(image=image, user=self.editor, visibility=Visibility.PROJECT)
        image_set_visibility(image=image, user=self.editor, visibility=Visibility.UNLISTED)
        self.assertEqual(Image.objects.get(pk=image.pk).share_token, token)

    def test_the_page_shows_the_link_to_members(self):
        self.set_state("unlisted")
        self.client.force_login(self.viewer)
        response = self.client.get(self.image.get_absolute_url())
        self.assertContains(response, f"http://testserver/shared/{self.image.share_token}/")
        self.assertNotContains(response, reverse("image_share_reset", args=[self.image.pk]))

    def test_a_new_link_ends_the_old_one(self):
        self.set_state("unlisted")
        old = reverse("image_shared", args=[self.image.share_token])
        self.assertEqual(self.client.get(old).status_code, 200)
        image = self.fresh()
        image_share_link_reset(image=image, user=self.editor)
        self.assertEqual(self.client.get(old).status_code, 404)
        self.assertEqual(
            self.client.get(reverse("image_shared", args=[image.share_token])).status_code, 200
        )

    def test_the_service_checks_the_role(self):
        from django.core.exceptions import PermissionDenied

        with self.assertRaises(PermissionDenied):
            image_set_visibility(image=self.fresh(), user=self.viewer, visibility="team")
        with self.assertRaises(VisibilityRefused):
            image_set_visibility(image=self.fresh(), user=self.editor, visibility="public")


class SharedPageTestCase(VisibilityTestCase):
    def test_an_anonymous_visitor_sees_the_image_and_nothing_of_the_project(self):
        self.set_state("unlisted")
        response = self.client.get(reverse("image_shared", args=[self.image.share_token]))
        token = self.image.share_token
        self.assertContains(response, f'src="/shared/{token}/file/"')
        self.assertContains(response, f'href="/shared/{token}/file/?download=1"')
        self.assertContains(response, '<meta name="robots" content="noindex">')
        for private in (
            self.project.get_absolute_url(),
            self.image.file_url(),
            reverse("image_remix", args=[self.image.pk]),
            reverse("image_visibility", args=[self.image.pk]),
            'id="sharing"',
        ):
            with self.subTest(private=private):
                self.assertNotContains(response, f'"{private}"')
        self.assertNotContains(response, 'id="sharing"')

    def test_lineage_shows_only_what_the_visitor_may_see(self):
        self.set_state("unlisted")
        child = make_image(make_job(self.project, self.editor, self.model,
                                    source_image=self.image, prompt="private child"))
        public_child = make_image(make_job(self.project, self.editor, self.model,
                                           source_image=self.image, prompt="public child"))
        Image.objects.filter(pk=public_child.pk).update(
            visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
        )
        response = self.client.get(reverse("image_shared", args=[self.image.share_token]))
        self.assertContains(response, "public child")
        self.assertNotContains(response, "private child")
        self.assertNotContains(response, f'href="{child.get_absolute_url()}"')

    def test_a_public_image_opens_for_anyone_at_its_own_address(self):
        self.set_state("public")
        response = self.client.get(self.image.get_absolute_url())
        self.assertContains(response, "Public image")
        self.assertNotContains(response, reverse("image_remix", args=[self.image.pk]))


class ThumbnailBadgeTestCase(VisibilityTestCase):
    def test_shared_images_are_marked_in_grids(self):
        self.client.force_login(self.viewer)
        url = reverse("project_gallery", args=[self.project.pk])
        self.assertNotContains(self.client.get(url), "thumb-badge")
        self.set_state("unlisted")
        self.assertContains(self.client.get(url), '<span class="thumb-badge">Link</span>')


class MembershipEndsAccessTestCase(VisibilityTestCase):
    def test_a_member_who_leaves_loses_access(self):
        self.client.force_login(self.viewer)
        url = self.image.get_absolute_url()
        self.assertEqual(self.client.get(url).status_code, 200)
        Membership.objects.filter(user=self.viewer).delete()
        self.assertEqual(self.client.get(url).status_code, 404)
