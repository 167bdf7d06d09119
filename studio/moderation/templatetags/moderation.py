from django import template

from studio.moderation.models import is_moderator

register = template.Library()


@register.filter
def moderates(user):
    """Whether the user moderates anything (the site or a team): `{% if user|moderates %}`."""
    return is_moderator(user)


@register.simple_tag
def unread_notifications(user):
    """How many of the user's notifications are unread (the top bar's badge)."""
    from studio.moderation.models import Notification

    if not user.is_authenticated:
        return 0
    return Notification.objects.filter(user=user, read_at__isnull=True).count()
