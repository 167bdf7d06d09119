from django import template

from studio.moderation.models import is_moderator

register = template.Library()


@register.filter
def moderates(user):
    """Whether the user moderates anything (the site or a team): `{% if user|moderates %}`."""
    return is_moderator(user)
