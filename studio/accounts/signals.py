from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from studio.realtime import events


@receiver(user_logged_out)
def close_sockets_of_the_session(sender, request, user, **kwargs):
    """Sent before the session is flushed: its key still names the sockets to close."""
    if user is not None and request.session.session_key:
        events.session_ended(user.pk, request.session.session_key)
