"""An invite link opened signed out says which team invites you and offers sign-up or
log-in, both coming back to join; admins copy and revoke open invitations."""

from urllib.parse import quote

from django.urls import reverse

from studio.accounts.models import Invitation, Role, User
from tests.base import StudioTestCase


class SignedOutInvitationTests(StudioTestCase):
    def setUp(self):
        self.invitation = Invitation.objects.create(
            team=self.team, role=Role.EDITOR, created_by=self.admin
        )
        self.url = self.invitation.get_absolute_url()

    def test_it_names_the_team_and_offers_sign_up_and_log_in(self):
        response = self.client.get(self.url)
        self.assertContains(response, "Join Alpha")
        self.assertContains(response, "bob invited you as")
        self.assertContains(response, f'href="{reverse("signup")}?next={quote(self.url)}"')
        self.assertContains(response, f'href="{reverse("login")}?next={quote(self.url)}"')
        self.assertNotContains(response, "Accept invitation")

    def test_signing_up_comes_back_to_join(self):
        response = self.client.post(
            f'{reverse("signup")}?next={quote(self.url)}',
            {"username": "newbie", "email": "newbie@example.org",
             "password1": self.password, "password2": self.password},
        )
        self.assertRedirects(response, self.url)
        response = self.client.post(self.url)
        self.assertRedirects(response, self.team.get_absolute_url())
        self.assertEqual(self.team.role_of(User.objects.get(username="newbie")), Role.EDITOR)

    def test_logging_in_comes_back_to_join(self):
        response = self.client.post(
            f'{reverse("login")}?next={quote(self.url)}',
            {"username": "eve", "password": self.password},
        )
        self.assertRedirects(response, self.url)
        self.assertContains(self.client.get(self.url), "Accept invitation")
        self.client.post(self.url)
        self.assertEqual(self.team.role_of(self.outsider), Role.EDITOR)

    def test_accepting_signed_out_asks_to_log_in_and_joins_nobody(self):
        response = self.client.post(self.url)
        self.assertRedirects(
            response, f'{reverse("login")}?next={quote(self.url)}', fetch_redirect_response=False
        )
        self.invitation.refresh_from_db()
        self.assertIsNone(self.invitation.accepted_at)

    def test_a_used_link_says_so_signed_out_too(self):
        self.client.force_login(self.outsider)
        self.client.post(self.url)
        self.client.logout()
        response = self.client.get(self.url)
        self.assertContains(response, "This invitation has expired or was already used.")
        self.assertNotContains(response, "Sign up to join")

    def test_an_unknown_token_is_not_found(self):
        self.assertEqual(self.client.get("/invitations/not-a-token/").status_code, 404)


class InvitationRevokeTests(StudioTestCase):
    def setUp(self):
        self.invitation = Invitation.objects.create(
            team=self.team, role=Role.VIEWER, created_by=self.admin, email="x@example.org"
        )
        self.url = reverse("invitation_revoke", args=[self.invitation.pk])

    def test_the_team_page_offers_copy_and_revoke(self):
        self.client.force_login(self.admin)
        response = self.client.get(self.team.get_absolute_url())
        link = "http://testserver" + self.invitation.get_absolute_url()
        self.assertContains(response, f'data-copy-text="{link}"')
        self.assertContains(response, f'action="{self.url}"')

    def test_an_admin_revokes_and_the_link_stops_working(self):
        self.client.force_login(self.admin)
        response = self.client.post(self.url)
        self.assertRedirects(response, self.team.get_absolute_url())
        self.assertFalse(Invitation.objects.exists())
        self.client.force_login(self.outsider)
        self.assertEqual(self.client.get(self.invitation.get_absolute_url()).status_code, 404)

    def test_others_cant_revoke(self):
        for user in (self.editor, self.viewer, self.outsider):
            with self.subTest(user=user.username):
                self.client.force_login(user)
                response = self.client.post(self.url)
                self.assertIn(response.status_code, (403, 404))
                self.assertTrue(Invitation.objects.filter(pk=self.invitation.pk).exists())

    def test_revoking_needs_a_post(self):
        self.client.force_login(self.admin)
        self.assertEqual(self.client.get(self.url).status_code, 405)
        self.assertTrue(Invitation.objects.exists())

    def test_an_accepted_invitation_is_not_revoked(self):
        Invitation.objects.filter(pk=self.invitation.pk).update(email="")
        self.client.force_login(self.outsider)
        self.client.post(self.invitation.get_absolute_url())
        self.client.force_login(self.admin)
        self.assertEqual(self.client.post(self.url).status_code, 404)
