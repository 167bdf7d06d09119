"""The prompt history's thumbnails, rendered in Python: `{% history_thumbs entry.images %}`.

A page of 20 prompts shows up to 120 of them, and as template markup (five values each,
every one through Django's variable lookup, localisation and autoescaping) they were most
of the page's rendering time. Here each is one string, its values escaped with html.escape
(what autoescaping runs), its URLs those of the image's own methods."""

from html import escape

from django import template
from django.utils.safestring import mark_safe

register = template.Library()


@register.simple_tag
def history_thumbs(images):
    """A list item per image: its page, with its thumbnail."""
    return mark_safe("".join(
        f'<li><a href="{escape(image.get_absolute_url())}" '
        f'title="Image {image.pk}, seed {image.seed}"><img src="{escape(image.thumb_url)}" '
        f'alt="{escape(image.alt_text())}" width="72" height="72" loading="lazy" '
        f'decoding="async"></a></li>'
        for image in images
    ))
