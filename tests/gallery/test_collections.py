"""Collections (boards) of a team or a project: who sees them (private / project / team /
link / public), who changes them (owner, team admins; contributors add), adding images
one by one or in bulk from a grid's multi-select, reordering, cover, deletion. A
collection never shows anyone an image they may not open by itself."""

import re
from datetime import timedelta
from unittest import mock

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from gallery.collections.models import Collection, CollectionItem, CollectionVisibility
from gallery.collections.services import MAX_IMAGES_PER_ADD
from gallery.deletion.services import collections_purge_due
from gallery.models import Image, ModerationStatus, Visibility
from gallery.thumbnails import image_thumbnails_make
from studio.accounts.models import Membership, Project, Role, User
from tests.base import StudioTestCase, make_image, make_job

HTMX = {"HTTP_HX_REQUEST": "true"}
MEMBERS = ("owner", "admin", "editor", "viewer")


def ids_in(response):
    return [int(pk) for pk in re.findall(r'data-image-id="(\d+)"', response.content.decode())]


def publish(*images):
    Image.objects.filter(pk__in=[image.pk for image in images]).update(
        visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
    )


class CollectionTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.fox, cls.owl, cls.cat = (
            make_image(make_job(cls.project, cls.editor, cls.model, prompt=prompt))
            for prompt in ("a red fox", "an owl", "a cat")
        )
        cls.hers = make_image(make_job(cls.other_project, cls.outsider, cls.model))
        # The editor's board in the project, holding fox, owl, cat in that order.
        cls.board = Collection.objects.create(
            team=cls.team, project=cls.project, name="Moodboard", created_by=cls.editor,
            visibility=CollectionVisibility.TEAM,
        )
        for position, image in enumerate((cls.fox, cls.owl, cls.cat)):
            CollectionItem.objects.create(collection=cls.board, image=image, position=position)

    def login(self, who):
        self.client.logout()
        if who != "anonymous":
            self.client.force_login(self.users_by_role()[who] if isinstance(who, str) else who)

    def set_visibility(self, visibility, collection=None):
        collection = collection or self.board
        Collection.objects.filter(pk=collection.pk).update(
            visibility=visibility, share_token="t" * 32
        )
        collection.refresh_from_db()


class CollectionViewAccessTestCase(CollectionTestCase):
    """Who may open the collection page, by its visibility and the viewer's role."""

    # visibility: who may open it (beyond its owner, the editor)
    EXPECTED = {
        "private": set(),
        "project": {"owner", "admin", "viewer"},
        "team": {"owner", "admin", "viewer"},
        "unlisted": {"owner", "admin", "viewer"},
        "public": {"owner", "admin", "viewer", "outsider", "anonymous"},
    }

    def test_matrix(self):
        url = self.board.get_absolute_url()
        for visibility, allowed in self.EXPECTED.items():
            self.set_visibility(visibility)
            for who in (*MEMBERS, "outsider", "anonymous"):
                with self.subTest(visibility=visibility, who=who):
                    self.login(who)
                    response = self.client.get(url)
                    if who == "editor" or who in allowed:
                        self.assertEqual(response.status_code, 200)
                    elif who == "anonymous":
                        self.assertRedirects(response, f"{reverse('login')}?next={url}",
                                             fetch_redirect_response=False)
                    else:
                        self.assertEqual(response.status_code, 404)

    @mock.patch("gallery.browse.PAGE_SIZE", 1)
    def test_the_next_page_fragment_follows_the_page(self):
        url = self.board.get_absolute_url()
        self.login("viewer")
        cursor = self.client.get(url).context["page"].next_cursor
        response = self.client.get(url, {"cursor": cursor}, **HTMX)
        self.assertEqual(ids_in(response), [self.owl.pk])
        self.assertNotContains(response, "<html")
        response = self.client.get(url, {"cursor": "².1"}, **HTMX)
        self.assertEqual(response.status_code, 200)  # not one of ours: from the top
        for who in ("outsider", "anonymous"):
            with self.subTest(who=who):
                self.login(who)
                response = self.client.get(url, {"cursor": cursor}, **HTMX)
                self.assertEqual(response.status_code, 404 if who == "outsider" else 302)
                self.assertEqual(ids_in(response), [])

    def test_private_opens_to_contributors(self):
        self.set_visibility("private")
        self.board.contributors.add(self.viewer)
        self.login("viewer")
        self.assertEqual(self.client.get(self.board.get_absolute_url()).status_code, 200)
        self.login("admin")  # admins manage, but a private board is its people's
        self.assertEqual(self.client.get(self.board.get_absolute_url()).status_code, 404)

    def test_a_member_who_leaves_loses_it(self):
        Membership.objects.filter(user=self.viewer).delete()
        self.login("viewer")
        self.assertEqual(self.client.get(self.board.get_absolute_url()).status_code, 404)

    def test_missing_is_404(self):
        self.login("owner")
        url = reverse("collection_detail", args=[self.board.pk + 100])
        self.assertEqual(self.client.get(url).status_code, 404)

    def test_the_link(self):
        url = reverse("collection_shared", args=["t" * 32])
        for visibility, opens in [("private", False), ("project", False), ("team", False),
                                  ("unlisted", True), ("public", True)]:
            self.set_visibility(visibility)
            for who in ("anonymous", "outsider"):
                with self.subTest(visibility=visibility, who=who):
                    self.login(who)
                    response = self.client.get(url)
                    self.assertEqual(response.status_code, 200 if opens else 404)
                    if opens:
                        self.assertContains(response, 'name="robots" content="noindex"')
        self.login("anonymous")
        self.assertEqual(self.client.get(reverse("collection_shared", args=["x" * 32])).status_code,
                         404)


class CollectionImagesVisibilityTestCase(CollectionTestCase):
    """The page lists only the images the viewer may see by themselves."""

    def test_visitors_see_only_public_images(self):
        publish(self.owl)
        Image.objects.filter(pk=self.cat.pk).update(visibility=Visibility.UNLISTED,
                                                    share_token="u" * 32)
        self.set_visibility("public")
        self.login("anonymous")
        response = self.client.get(self.board.get_absolute_url())
        self.assertEqual(ids_in(response), [self.owl.pk])
        self.assertContains(response, "1 image")
        self.assertNotContains(response, self.fox.prompt)
        self.login("outsider")
        self.assertEqual(ids_in(self.client.get(self.board.share_url())), [self.owl.pk])
        # Members see all three, and are told what visitors see.
        self.login("viewer")
        response = self.client.get(self.board.get_absolute_url())
        self.assertEqual(ids_in(response), [self.fox.pk, self.owl.pk, self.cat.pk])
        self.assertContains(response, "see 1 of these images")

    def test_an_image_made_private_leaves_the_public_page_at_once(self):
        publish(self.owl, self.fox)
        self.set_visibility("public")
        Image.objects.filter(pk=self.owl.pk).update(visibility=Visibility.PROJECT)
        self.login("anonymous")
        self.assertEqual(ids_in(self.client.get(self.board.get_absolute_url())), [self.fox.pk])

    def test_deleted_images_leave(self):
        Image.objects.filter(pk=self.owl.pk).update(deleted_at=timezone.now())
        self.login("viewer")
        response = self.client.get(self.board.get_absolute_url())
        self.assertEqual(ids_in(response), [self.fox.pk, self.cat.pk])

    def test_a_cover_the_viewer_may_not_see_is_not_shown(self):
        publish(self.owl)
        image_thumbnails_make(image_id=self.fox.pk)
        Collection.objects.filter(pk=self.board.pk).update(
            cover=self.fox, visibility=CollectionVisibility.PUBLIC
        )
        self.login("anonymous")
        response = self.client.get(self.board.get_absolute_url())
        self.assertNotContains(response, f"/images/{self.fox.pk}/")
        self.assertContains(response, self.owl.thumb_url)  # its first visible image instead

    def test_the_image_page_lists_only_collections_the_viewer_may_see(self):
        publish(self.fox)
        mine = Collection.objects.create(team=self.team, name="Secret picks",
                                         created_by=self.owner)
        CollectionItem.objects.create(collection=mine, image=self.fox, position=0)
        theirs = Collection.objects.create(team=self.other_team, name="Her finds",
                                           created_by=self.outsider,
                                           visibility=CollectionVisibility.PUBLIC)
        CollectionItem.objects.create(collection=theirs, image=self.fox, position=0)
        self.login("viewer")
        response = self.client.get(self.fox.get_absolute_url())
        self.assertContains(response, "Moodboard")
        self.assertContains(response, "Her finds")
        self.assertNotContains(response, "Secret picks")
        self.login("anonymous")
        response = self.client.get(self.fox.get_absolute_url())
        self.assertContains(response, "Her finds")
        self.assertNotContains(response, "Moodboard")


class CollectionListTestCase(CollectionTestCase):
    def test_team_and_project_lists(self):
        team_board = Collection.objects.create(team=self.team, name="Finals",
                                               created_by=self.owner, visibility="team")
        Collection.objects.create(team=self.team, name="Owner's private", created_by=self.owner,
                                  visibility=CollectionVisibility.PRIVATE)
        self.login("viewer")
        response = self.client.get(reverse("team_collections", args=[self.team.pk]))
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "Moodboard")
        self.assertContains(response, "3 images")
        self.assertContains(response, team_board.get_absolute_url())
        self.assertNotContains(response, "Owner&#x27;s private")
        self.assertNotContains(response, "New collection")  # viewers don't make them
        response = self.client.get(reverse("project_collections", args=[self.project.pk]))
        self.assertContains(response, "Moodboard")
        self.assertNotContains(response, "Finals")

    def test_others_get_404_anonymous_log_in(self):
        for url in (reverse("team_collections", args=[self.team.pk]),
                    reverse("project_collections", args=[self.project.pk])):
            self.login("outsider")
            self.assertEqual(self.client.get(url).status_code, 404)
            self.login("anonymous")
            self.assertRedirects(self.client.get(url), f"{reverse('login')}?next={url}",
                                 fetch_redirect_response=False)

    def test_gallery_pages_link_to_collections(self):
        self.login("viewer")
        response = self.client.get(reverse("project_gallery", args=[self.project.pk]))
        self.assertContains(response, reverse("project_collections", args=[self.project.pk]))
        response = self.client.get(reverse("team_gallery", args=[self.team.pk]))
        self.assertContains(response, reverse("team_collections", args=[self.team.pk]))
        response = self.client.get(reverse("team_detail", args=[self.team.pk]))
        self.assertContains(response, reverse("team_collections", args=[self.team.pk]))


class CollectionCreateTestCase(CollectionTestCase):
    def post(self, who, **data):
        self.login(who)
        return self.client.post(reverse("collection_new", args=[self.team.pk]),
                                {"name": "Picks", "visibility": "team", **data})

    def test_editors_make_them(self):
        for who in ("owner", "admin", "editor"):
            with self.subTest(who=who):
                response = self.post(who, name=f"  Picks   of {who} ")
                collection = Collection.objects.get(name=f"Picks of {who}")
                self.assertRedirects(response, collection.get_absolute_url())
                self.assertEqual(collection.created_by, self.users_by_role()[who])
                self.assertIsNone(collection.project)

    def test_in_a_project(self):
        self.post("editor", project=self.project.pk, visibility="project")
        self.assertEqual(Collection.objects.get(name="Picks").project, self.project)

    def test_viewers_403_outsiders_404(self):
        self.assertEqual(self.post("viewer").status_code, 403)
        self.assertEqual(self.post("outsider").status_code, 404)
        self.assertEqual(self.post("anonymous").status_code, 302)
        self.assertFalse(Collection.objects.filter(name="Picks").exists())

    def test_bad_input(self):
        cases = [
            ({"name": "   "}, "name", "Give the collection a name."),
            ({"name": "x" * 81}, "name", "at most 80 characters"),
            ({"visibility": "everyone"}, "visibility", "Select a valid choice"),
            ({"visibility": "project"}, "visibility", "can't be limited to a project"),
            ({"project": self.other_project.pk}, "project", "Select a valid choice"),
            ({"project": "nonsense"}, "project", "Select a valid choice"),
        ]
        for data, field, message in cases:
            with self.subTest(data=data):
                response = self.post("editor", **data)
                self.assertEqual(response.status_code, 422)
                self.assertIn(message, " ".join(response.context["form"].errors[field]))
                self.assertContains(response, "field-error", status_code=422)
        self.assertEqual(Collection.objects.count(), 1)

    def test_get_not_allowed(self):
        self.login("editor")
        response = self.client.get(reverse("collection_new", args=[self.team.pk]))
        self.assertEqual(response.status_code, 405)


class CollectionManageTestCase(CollectionTestCase):
    """Owner and team admins change it; other members get 403, outsiders 404."""

    def actions(self):
        board = self.board.pk
        return {
            "edit": (reverse("collection_edit", args=[board]),
                     {"name": "Renamed", "description": "", "visibility": "team"}),
            "cover": (reverse("collection_cover", args=[board]), {"image": self.owl.pk}),
            "move": (reverse("collection_image_move", args=[board, self.owl.pk]),
                     {"direction": "up"}),
            "place": (reverse("collection_image_place", args=[board, self.owl.pk]),
                      {"target": self.fox.pk, "side": "before"}),
            "remove": (reverse("collection_image_remove", args=[board, self.cat.pk]), {}),
            "contributor": (reverse("collection_contributor", args=[board]),
                            {"user": self.viewer.pk, "action": "add"}),
            "delete": (reverse("collection_delete", args=[board]), {}),
        }

    def test_matrix(self):
        expected = {"owner": 302, "admin": 302, "editor": 302, "viewer": 403, "outsider": 404}
        for who, status in expected.items():
            for name, (url, data) in self.actions().items():
                if name == "delete" and status == 302:
                    continue
                with self.subTest(who=who, action=name):
                    self.login(who)
                    CollectionItem.objects.get_or_create(
                        collection=self.board, image=self.cat, defaults={"position": 9}
                    )
                    self.assertEqual(self.client.post(url, data).status_code, status)
        self.login("anonymous")
        for name, (url, data) in self.actions().items():
            with self.subTest(who="anonymous", action=name):
                response = self.client.post(url, data)
                self.assertRedirects(response, f"{reverse('login')}?next={url}",
                                     fetch_redirect_response=False)
        self.assertTrue(Collection.objects.filter(pk=self.board.pk).exists())

    def test_another_editor_may_not_change_it(self):
        other_editor = User.objects.create_user("frank")
        Membership.objects.create(team=self.team, user=other_editor, role=Role.EDITOR)
        self.login(other_editor)
        url, data = self.actions()["edit"]
        self.assertEqual(self.client.post(url, data).status_code, 403)

    def test_rename_and_share(self):
        self.login("editor")
        url, _ = self.actions()["edit"]
        response = self.client.post(url, {"name": "Finals", "description": "For the client",
                                          "visibility": "unlisted"})
        self.assertRedirects(response, self.board.get_absolute_url())
        self.board.refresh_from_db()
        self.assertEqual((self.board.name, self.board.visibility), ("Finals", "unlisted"))
        self.assertTrue(self.board.share_token)
        token = self.board.share_token
        self.client.post(url, {"name": "Finals", "visibility": "public"})
        self.board.refresh_from_db()
        self.assertEqual(self.board.share_token, token)  # the link stays the same

    def test_edit_bad_input_changes_nothing(self):
        self.login("editor")
        url, _ = self.actions()["edit"]
        for data, message in [({"name": "", "visibility": "team"}, "Give the collection a name."),
                              ({"name": "X", "visibility": "friends"}, "Select a valid choice")]:
            with self.subTest(data=data):
                response = self.client.post(url, data)
                self.assertEqual(response.status_code, 422)
                self.assertContains(response, message, status_code=422)
        self.board.refresh_from_db()
        self.assertEqual((self.board.name, self.board.visibility), ("Moodboard", "team"))
        team_board = Collection.objects.create(team=self.team, name="T", created_by=self.editor)
        response = self.client.post(reverse("collection_edit", args=[team_board.pk]),
                                    {"name": "T", "visibility": "project"})
        self.assertContains(response, "can&#x27;t be limited to a project", status_code=422)

    def test_reorder(self):
        self.login("editor")
        move = lambda image, direction: self.client.post(  # noqa: E731
            reverse("collection_image_move", args=[self.board.pk, image.pk]),
            {"direction": direction}, **HTMX,
        )
        self.assertEqual(move(self.cat, "up").status_code, 204)
        order = lambda: ids_in(self.client.get(self.board.get_absolute_url()))  # noqa: E731
        self.assertEqual(order(), [self.fox.pk, self.cat.pk, self.owl.pk])
        move(self.fox, "down")
        self.assertEqual(order(), [self.cat.pk, self.fox.pk, self.owl.pk])
        move(self.cat, "up")  # already first: nothing moves
        move(self.owl, "down")
        self.assertEqual(order(), [self.cat.pk, self.fox.pk, self.owl.pk])
        self.assertEqual(move(self.cat, "sideways").status_code, 400)
        response = self.client.post(
            reverse("collection_image_move", args=[self.board.pk, self.hers.pk]),
            {"direction": "up"},
        )
        self.assertEqual(response.status_code, 404)  # not in it

    def test_drag_and_drop_places_an_image_before_or_after_another(self):
        self.login("editor")

        def place(image, target, side):
            return self.client.post(
                reverse("collection_image_place", args=[self.board.pk, image.pk]),
                {"target": target, "side": side}, **HTMX,
            )

        order = lambda: ids_in(self.client.get(self.board.get_absolute_url()))  # noqa: E731
        self.assertEqual(place(self.cat, self.fox.pk, "before").status_code, 204)
        self.assertEqual(order(), [self.cat.pk, self.fox.pk, self.owl.pk])
        place(self.cat, self.owl.pk, "after")
        self.assertEqual(order(), [self.fox.pk, self.owl.pk, self.cat.pk])
        place(self.fox, self.owl.pk, "after")
        self.assertEqual(order(), [self.owl.pk, self.fox.pk, self.cat.pk])
        self.assertEqual(
            list(self.board.items.order_by("position").values_list("position", flat=True)),
            [0, 1, 2],
        )
        for target, side in [(self.owl.pk, "above"), (self.hers.pk, "before"),
                             (self.cat.pk, "before"), ("x", "before"), ("", "after")]:
            with self.subTest(target=target, side=side):
                response = place(self.cat, target, side)
                self.assertEqual(response.status_code, 400)
        self.assertEqual(order(), [self.owl.pk, self.fox.pk, self.cat.pk])
        response = self.client.post(
            reverse("collection_image_place", args=[self.board.pk, self.hers.pk]),
            {"target": self.fox.pk, "side": "before"},
        )
        self.assertEqual(response.status_code, 404)  # not in it

    def test_cover(self):
        self.login("editor")
        url = reverse("collection_cover", args=[self.board.pk])
        self.client.post(url, {"image": self.owl.pk})
        self.board.refresh_from_db()
        self.assertEqual(self.board.cover, self.owl)
        for bad in (self.hers.pk, "x", "9" * 30, "²"):
            with self.subTest(image=bad):
                self.assertEqual(self.client.post(url, {"image": bad}).status_code, 404)
        self.client.post(url, {"image": ""})
        self.board.refresh_from_db()
        self.assertIsNone(self.board.cover)

    def test_remove_keeps_the_image_and_clears_the_cover(self):
        Collection.objects.filter(pk=self.board.pk).update(cover=self.cat)
        self.login("admin")
        response = self.client.post(
            reverse("collection_image_remove", args=[self.board.pk, self.cat.pk]), **HTMX
        )
        self.assertEqual(response.status_code, 200)
        self.assertFalse(self.board.items.filter(image=self.cat).exists())
        self.assertTrue(Image.objects.filter(pk=self.cat.pk).exists())
        self.board.refresh_from_db()
        self.assertIsNone(self.board.cover)

    def test_contributors(self):
        self.login("editor")
        url = reverse("collection_contributor", args=[self.board.pk])
        self.client.post(url, {"user": self.viewer.pk, "action": "add"})
        self.assertEqual(list(self.board.contributors.all()), [self.viewer])
        response = self.client.post(url, {"user": self.outsider.pk, "action": "add"},
                                    follow=True)
        self.assertContains(response, "Contributor: choose a member of the team.")
        self.client.post(url, {"user": "nobody", "action": "add"})
        self.client.post(url, {"user": self.viewer.pk, "action": "remove"})
        self.assertEqual(list(self.board.contributors.all()), [])

    def test_delete_keeps_the_images_and_can_be_undone(self):
        self.login("admin")
        response = self.client.post(reverse("collection_delete", args=[self.board.pk]),
                                    follow=True)
        self.assertRedirects(response, reverse("team_collections", args=[self.team.pk]))
        undo = reverse("collection_undo", args=[self.board.pk])
        self.assertContains(response, f'action="{undo}"')  # the message's Undo button
        self.assertNotContains(response, "Moodboard</div>")
        self.assertFalse(Collection.objects.filter(pk=self.board.pk).exists())
        self.assertEqual(Image.objects.filter(project=self.project).count(), 3)
        # Gone everywhere: its page, its link, the image page, the grids' select mode.
        self.set_visibility_of_deleted("unlisted")
        for url in (self.board.get_absolute_url(), reverse("collection_shared", args=["t" * 32])):
            self.assertEqual(self.client.get(url).status_code, 404)
        self.assertNotContains(self.client.get(self.fox.get_absolute_url()), "Moodboard")
        response = self.client.get(reverse("project_gallery", args=[self.project.pk]))
        self.assertEqual(response.context["select_collections"], [])
        # Undo: back as it was, images, order and all.
        response = self.client.post(undo)
        self.assertRedirects(response, self.board.get_absolute_url())
        self.assertEqual(ids_in(self.client.get(self.board.get_absolute_url())),
                         [self.fox.pk, self.owl.pk, self.cat.pk])

    def set_visibility_of_deleted(self, visibility):
        Collection.all_objects.filter(pk=self.board.pk).update(
            visibility=visibility, share_token="t" * 32
        )

    def test_undo_only_by_its_managers_and_within_the_window(self):
        Collection.objects.filter(pk=self.board.pk).update(deleted_at=timezone.now())
        undo = reverse("collection_undo", args=[self.board.pk])
        for who, status in (("viewer", 403), ("outsider", 404)):
            with self.subTest(who=who):
                self.login(who)
                self.assertEqual(self.client.post(undo).status_code, status)
        self.login("anonymous")
        self.assertEqual(self.client.post(undo).status_code, 302)
        self.assertFalse(Collection.objects.filter(pk=self.board.pk).exists())
        with self.settings(STUDIO_DELETE_UNDO_SECONDS=60):
            Collection.all_objects.filter(pk=self.board.pk).update(
                deleted_at=timezone.now() - timedelta(minutes=2)
            )
            self.login("editor")
            response = self.client.post(undo, follow=True)
            self.assertContains(response, "was deleted more than 1 minute ago: it can&#x27;t be "
                                "restored any more.")
            self.assertFalse(Collection.objects.filter(pk=self.board.pk).exists())
            # The purge takes those past the window away for good, not another deletion.
            team_board = Collection.objects.create(team=self.team, name="T",
                                                   created_by=self.editor)
            self.client.post(reverse("collection_delete", args=[team_board.pk]))
            self.assertTrue(Collection.all_objects.filter(pk=self.board.pk).exists())
            collections_purge_due()
            self.assertFalse(Collection.all_objects.filter(pk=self.board.pk).exists())
            self.assertTrue(Collection.all_objects.filter(pk=team_board.pk).exists())


class CollectionAddTestCase(CollectionTestCase):
    URL = reverse("collection_add")

    def add(self, who, images, collection=None, **headers):
        self.login(who)
        return self.client.post(self.URL, {
            "collection": (collection or self.board).pk,
            "image": [getattr(image, "pk", image) for image in images],
        }, **headers)

    def setUp(self):
        CollectionItem.objects.filter(collection=self.board).exclude(image=self.fox).delete()

    def test_bulk_add_in_order_at_the_end(self):
        response = self.add("editor", [self.cat, self.owl, self.fox], **HTMX)
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "2 images added to “Moodboard”")
        self.assertEqual(
            list(self.board.items.values_list("image", flat=True)),
            [self.fox.pk, self.cat.pk, self.owl.pk],
        )
        response = self.add("editor", [self.owl], **HTMX)
        self.assertContains(response, "Already in “Moodboard”")
        self.assertEqual(self.board.items.count(), 3)

    def test_without_htmx_back_to_the_page(self):
        self.login("editor")
        gallery = reverse("project_gallery", args=[self.project.pk])
        response = self.client.post(self.URL, {"collection": self.board.pk,
                                               "image": [self.owl.pk], "next": gallery})
        self.assertRedirects(response, gallery)
        response = self.client.post(self.URL, {"collection": self.board.pk,
                                               "image": [self.cat.pk],
                                               "next": "https://evil.example/"})
        self.assertRedirects(response, self.board.get_absolute_url())

    def test_who_may_add(self):
        # Owner of the board and team admins; contributors; not other members.
        expected = {"editor": 200, "owner": 200, "admin": 200, "viewer": 403}
        for who, status in expected.items():
            with self.subTest(who=who):
                self.assertEqual(self.add(who, [self.owl], **HTMX).status_code, status)
        self.board.contributors.add(self.viewer)
        self.assertEqual(self.add("viewer", [self.cat], **HTMX).status_code, 200)
        # Not in the team: as if the collection did not exist.
        response = self.add("outsider", [self.hers], **HTMX)
        self.assertContains(response, "Collection: choose one of your collections.",
                            status_code=422)
        self.login("anonymous")
        self.assertEqual(self.client.post(self.URL, {"collection": self.board.pk}).status_code,
                         302)

    def test_only_images_the_user_may_see_all_or_nothing(self):
        response = self.add("editor", [self.owl, self.hers], **HTMX)
        self.assertContains(response, "Images: 1 of the chosen images can&#x27;t be found; "
                            "nothing was added.", status_code=422)
        self.assertEqual(self.board.items.count(), 1)
        publish(self.hers)  # public: anyone may keep it in a collection
        self.assertEqual(self.add("editor", [self.owl, self.hers], **HTMX).status_code, 200)
        self.assertEqual(self.board.items.count(), 3)

    def test_unlisted_images_of_other_teams_are_not_addable_by_their_link(self):
        Image.objects.filter(pk=self.hers.pk).update(visibility=Visibility.UNLISTED,
                                                     share_token="h" * 32)
        response = self.add("editor", [self.hers], **HTMX)
        self.assertEqual(response.status_code, 422)

    def test_deleted_images_are_not_addable(self):
        Image.objects.filter(pk=self.owl.pk).update(deleted_at=timezone.now())
        self.assertEqual(self.add("editor", [self.owl], **HTMX).status_code, 422)

    def test_bad_input(self):
        cases = [
            ({"collection": self.board.pk}, "Images: choose at least one image."),
            ({"collection": self.board.pk, "image": ["3; drop"]}, "is not an image"),
            ({"collection": self.board.pk, "image": ["-1"]}, "is not an image"),
            ({"collection": self.board.pk, "image": ["²"]}, "is not an image"),
            ({"collection": self.board.pk,
              "image": [str(n) for n in range(1, MAX_IMAGES_PER_ADD + 2)]},
             f"at most {MAX_IMAGES_PER_ADD} at a time"),
            ({"collection": "x", "image": [self.owl.pk]}, "Collection: choose one"),
            ({"image": [self.owl.pk]}, "Collection: choose one"),
            ({"collection": self.board.pk + 100, "image": [self.owl.pk]}, "Collection: choose"),
        ]
        self.login("editor")
        for data, message in cases:
            with self.subTest(data=data):
                response = self.client.post(self.URL, data, **HTMX)
                self.assertContains(response, message, status_code=422)
        self.assertEqual(self.board.items.count(), 1)

    def test_grids_offer_select_mode_with_the_collections_the_user_may_add_to(self):
        other = Collection.objects.create(team=self.team, name="Owner's", created_by=self.owner)
        self.login("editor")
        response = self.client.get(reverse("project_gallery", args=[self.project.pk]))
        self.assertContains(response, 'id="image-select-form"')
        self.assertContains(response, 'form="image-select-form" data-select-image')
        self.assertEqual(response.context["select_collections"], [self.board])
        self.login("admin")  # admins may add to every collection of the team
        response = self.client.get(reverse("team_gallery", args=[self.team.pk]))
        self.assertEqual(set(response.context["select_collections"]), {self.board, other})
        response = self.client.get(reverse("explore"))
        self.assertContains(response, 'id="image-select-form"')
        self.client.logout()
        self.assertNotContains(self.client.get(reverse("explore")), 'id="image-select-form"')

    def test_image_page_adds_to_a_collection(self):
        self.login("editor")
        response = self.client.get(self.owl.get_absolute_url())
        self.assertContains(response, "Add to collection")
        self.assertEqual(response.context["addable_collections"], [self.board])
        response = self.client.get(self.fox.get_absolute_url())  # already in it
        self.assertEqual(response.context["addable_collections"], [])


class CollectionQueryCountTestCase(StudioTestCase):
    """The collection page and the list cost the same queries for 10 images as for 100."""

    def fill(self, count):
        Collection.objects.all().delete()
        Image.objects.all().delete()
        board = Collection.objects.create(team=self.team, name="Big", created_by=self.editor,
                                          visibility=CollectionVisibility.PUBLIC)
        board.contributors.add(self.viewer)
        second = Project.objects.create(team=self.team, name=f"More {count}")
        for n in range(count):
            image = make_image(make_job(self.project if n % 2 else second, self.editor,
                                        self.model))
            CollectionItem.objects.create(collection=board, image=image, position=n)
            if n % 4 == 0:
                image_thumbnails_make(image_id=image.pk)
            if n % 3 == 0:
                publish(image)
        Collection.objects.filter(pk=board.pk).update(cover=image)
        return board

    def count(self, url, params=None, headers=None):
        with CaptureQueriesContext(connection) as queries:
            response = self.client.get(url, params or {}, **(headers or {}))
        self.assertEqual(response.status_code, 200)
        return len(queries), response

    @mock.patch("gallery.browse.PAGE_SIZE", 2)
    def test_constant_in_the_number_of_images(self):
        counts = {}
        for size in (10, 100):
            board = self.fill(size)
            for who in (self.editor, self.viewer, None):
                self.client.logout()
                if who:
                    self.client.force_login(who)
                key = who.username if who else "anonymous"
                queries, response = self.count(board.get_absolute_url())
                counts.setdefault(key, []).append(queries)
                cursor = response.context["page"].next_cursor
                self.assertTrue(cursor)
                queries, _ = self.count(board.get_absolute_url(), {"cursor": cursor}, HTMX)
                counts.setdefault(f"{key}-next", []).append(queries)
                if who:
                    queries, _ = self.count(reverse("team_collections", args=[self.team.pk]))
                    counts.setdefault(f"{key}-list", []).append(queries)
        for page, (small, large) in counts.items():
            with self.subTest(page=page):
                self.assertEqual(small, large)

    @mock.patch("gallery.browse.PAGE_SIZE", 2)
    def test_pages_follow_each_other(self):
        board = self.fill(5)
        self.client.force_login(self.viewer)
        seen, cursor = [], ""
        while True:
            response = self.client.get(board.get_absolute_url(), {"cursor": cursor} if cursor
                                       else {}, **(HTMX if cursor else {}))
            seen += ids_in(response)
            found = re.search(r'hx-get="\?cursor=([0-9.]+)"', response.content.decode())
            if not found:
                break
            cursor = found.group(1)
        self.assertEqual(seen, list(board.items.values_list("image", flat=True)))


class CollectionPublishingSuspensionTestCase(CollectionTestCase):
    """Strikes that keep a user from publishing keep their collections from going public."""

    def setUp(self):
        from studio.moderation.models import Standing

        Standing.objects.create(
            user=self.editor,
            publishing_suspended_until=timezone.now() + timedelta(days=3),
        )
        self.login("editor")

    def test_a_suspended_user_cant_make_a_public_collection(self):
        response = self.client.post(reverse("collection_new", args=[self.team.pk]),
                                    {"name": "Shown", "visibility": "public"})
        self.assertContains(response, "You may not publish until", status_code=422)
        self.assertFalse(Collection.objects.filter(name="Shown").exists())

    def test_nor_make_one_public(self):
        response = self.client.post(reverse("collection_edit", args=[self.board.pk]),
                                    {"name": "Moodboard", "visibility": "public"})
        self.assertContains(response, "You may not publish until", status_code=422)
        self.board.refresh_from_db()
        self.assertEqual(self.board.visibility, CollectionVisibility.TEAM)

    def test_other_sharing_and_renaming_a_public_one_still_work(self):
        self.set_visibility(CollectionVisibility.PUBLIC)
        response = self.client.post(reverse("collection_edit", args=[self.board.pk]),
                                    {"name": "Renamed", "visibility": "public"})
        self.assertRedirects(response, self.board.get_absolute_url())
        response = self.client.post(reverse("collection_edit", args=[self.board.pk]),
                                    {"name": "Renamed", "visibility": "unlisted"})
        self.assertRedirects(response, self.board.get_absolute_url())
        self.board.refresh_from_db()
        self.assertEqual((self.board.name, self.board.visibility), ("Renamed", "unlisted"))
