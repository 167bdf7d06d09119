from django import template
from django.utils.html import json_script

from studio.realtime.event_types import event_types_for_scripts

register = template.Library()


@register.simple_tag
def event_types_script():
    """The event names as a JSON data block (id "event-types") for the page's scripts: a
    data block never runs, so the CSP's no-inline-scripts rule allows it."""
    return json_script(event_types_for_scripts(), "event-types")
