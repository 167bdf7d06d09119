from django.urls import reverse

from studio.accounts.models import Membership, Project, Role, Team
from tests.base import StudioTestCase


class TeamCreateTestCase(StudioTestCase):
    def test_creator_becomes_owner(self):
        self.client.force_login(self.viewer)
        response = self.client.post(reverse("team_create"), {"name": "Dave's studio"})
        team = Team.objects.get(name="Dave's studio")
        self.assertRedirects(response, team.get_absolute_url())
        self.assertEqual(team.role_of(self.viewer), Role.OWNER)

    def test_empty_name_is_refused_without_creating_a_team(self):
        self.client.force_login(self.viewer)
        count = Team.objects.count()
        response = self.client.post(reverse("team_create"), {"name": ""})
        self.assertEqual(response.status_code, 400)
        self.assertContains(response, "This field is required", status_code=400)
        self.assertEqual(Team.objects.count(), count)


class TeamDetailTestCase(StudioTestCase):
    def test_admin_sees_invite_form_and_member_controls(self):
        self.client.force_login(self.admin)
        response = self.client.get(reverse("team_detail", args=[self.team.pk]))
        self.assertContains(response, "Create invite link")
        self.assertContains(response, "Remove")

    def test_viewer_sees_members_but_no_controls(self):
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("team_detail", args=[self.team.pk]))
        self.assertContains(response, "carol")
        self.assertNotContains(response, "Create invite link")
        self.assertNotContains(response, "New project")


class ProjectCreateTestCase(StudioTestCase):
    def test_editor_creates_a_project_and_lands_in_its_studio(self):
        self.client.force_login(self.editor)
        response = self.client.post(reverse("project_create", args=[self.team.pk]),
                                    {"name": "Album covers"})
        project = Project.objects.get(name="Album covers")
        self.assertRedirects(response, project.get_absolute_url())
        self.assertEqual(project.team, self.team)
        self.assertEqual(project.created_by, self.editor)

    def test_name_too_long_is_refused(self):
        self.client.force_login(self.editor)
        self.client.post(reverse("project_create", args=[self.team.pk]), {"name": "x" * 81})
        self.assertFalse(Project.objects.filter(name="x" * 81).exists())


class MemberUpdateTestCase(StudioTestCase):
    def url(self, membership):
        return reverse("member_update", args=[self.team.pk, membership.pk])

    def test_admin_changes_a_role(self):
        membership = Membership.objects.get(team=self.team, user=self.viewer)
        self.client.force_login(self.admin)
        self.client.post(self.url(membership), {"role": "editor"})
        membership.refresh_from_db()
        self.assertEqual(membership.role, Role.EDITOR)

    def test_admin_removes_a_member(self):
        membership = Membership.objects.get(team=self.team, user=self.viewer)
        self.client.force_login(self.admin)
        self.client.post(self.url(membership), {"action": "remove"})
        self.assertFalse(Membership.objects.filter(pk=membership.pk).exists())

    def test_nobody_can_be_made_owner_and_the_owner_stays(self):
        viewer = Membership.objects.get(team=self.team, user=self.viewer)
        owner = Membership.objects.get(team=self.team, user=self.owner)
        self.client.force_login(self.admin)
        self.client.post(self.url(viewer), {"role": "owner"})
        self.client.post(self.url(owner), {"action": "remove"})
        viewer.refresh_from_db()
        self.assertEqual(viewer.role, Role.VIEWER)
        self.assertTrue(Membership.objects.filter(pk=owner.pk).exists())

    def test_membership_of_another_team_is_404(self):
        other = Membership.objects.get(team=self.other_team)
        self.client.force_login(self.admin)
        response = self.client.post(self.url(other), {"role": "viewer"})
        self.assertEqual(response.status_code, 404)


class ProjectCardsTestCase(StudioTestCase):
    def test_cards_show_the_latest_images_with_constant_queries(self):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from tests.base import make_image, make_job

        self.client.force_login(self.owner)
        make_image(make_job(self.project, self.editor, self.model))
        with CaptureQueriesContext(connection) as few:
            self.client.get(reverse("dashboard"))
        for _ in range(6):
            make_image(make_job(self.project, self.editor, self.model))
        extra = Project.objects.create(team=self.team, name="Second")
        make_image(make_job(extra, self.editor, self.model))
        with self.assertNumQueries(len(few.captured_queries)):
            response = self.client.get(reverse("dashboard"))
        cover = response.content.decode().split('class="card-cover"')[1].split("</div>")[0]
        self.assertEqual(cover.count("<img"), 4)
