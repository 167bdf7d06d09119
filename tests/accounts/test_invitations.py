from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from studio.accounts.models import Invitation, Membership, Role
from tests.base import StudioTestCase


class InvitationTestCase(StudioTestCase):
    def create(self, **data):
        self.client.force_login(self.admin)
        self.client.post(reverse("invitation_create", args=[self.team.pk]),
                         {"role": "editor", **data})
        return Invitation.objects.latest("created_at")

    def test_admin_creates_a_link_that_adds_the_user_with_its_role(self):
        invitation = self.create(role="viewer")
        self.client.force_login(self.outsider)
        self.assertContains(self.client.get(invitation.get_absolute_url()), "Join Alpha")
        response = self.client.post(invitation.get_absolute_url())
        self.assertRedirects(response, self.team.get_absolute_url())
        self.assertEqual(self.team.role_of(self.outsider), Role.VIEWER)

    def test_a_link_is_single_use(self):
        invitation = self.create()
        self.client.force_login(self.outsider)
        self.client.post(invitation.get_absolute_url())
        newcomer = type(self.outsider).objects.create_user("zed", "zed@example.org", "pw")
        self.client.force_login(newcomer)
        self.client.post(invitation.get_absolute_url())
        self.assertFalse(Membership.objects.filter(user=newcomer).exists())

    def test_an_expired_link_adds_nobody(self):
        invitation = self.create()
        Invitation.objects.filter(pk=invitation.pk).update(
            expires_at=timezone.now() - timedelta(minutes=1)
        )
        self.client.force_login(self.outsider)
        self.client.post(invitation.get_absolute_url())
        self.assertIsNone(self.team.role_of(self.outsider))

    def test_a_link_for_an_email_needs_that_account(self):
        invitation = self.create(email="someone@example.org")
        self.client.force_login(self.outsider)
        response = self.client.post(invitation.get_absolute_url(), follow=True)
        self.assertContains(response, "This invitation is for someone@example.org")
        self.assertIsNone(self.team.role_of(self.outsider))

    def test_owner_role_cannot_be_invited(self):
        self.client.force_login(self.admin)
        response = self.client.post(reverse("invitation_create", args=[self.team.pk]),
                                    {"role": "owner"}, follow=True)
        self.assertContains(response, "Invitation not created")
        self.assertFalse(Invitation.objects.exists())

    def test_unknown_token_is_404(self):
        self.client.force_login(self.outsider)
        response = self.client.get(reverse("invitation_accept", args=["nope"]))
        self.assertEqual(response.status_code, 404)
