"""The gallery's publication gate (gallery.publication), as moderation keeps it: strikes may
keep a user from publishing, and the site policy may have moderators approve what goes
public."""

from studio.moderation.publishing import (
    pending_publish_request,
    publish_request_open,
    publish_request_withdraw,
    publishing_needs_approval,
)
from studio.moderation.removals import publishing_refusal


class ModerationGate:
    def refusal(self, user):
        return publishing_refusal(user)

    def needs_approval(self):
        return publishing_needs_approval()

    def pending(self, *, image=None, collection=None):
        return pending_publish_request(image=image, collection=collection)

    def request_open(self, *, user, image=None, collection=None):
        publish_request_open(user=user, image=image, collection=collection)

    def request_withdraw(self, *, image=None, collection=None):
        publish_request_withdraw(image=image, collection=collection)
