"""The image card of every grid (galleries, Explore, collections, the studio, a LoRA's page)
and the like button, rendered in Python.

A grid shows 40 to 60 cards, and the card as Django template partials (three nested
includes, about fifty nodes a card) was the largest part of a gallery page's CPU time:
about 7 ms a page, against 1-2 ms here. What every card of a grid shares (the flags, the
viewer, the CSRF field, the URL patterns) is worked out once per grid (`CardStyle`); each
card is then one string, every value in it escaped with html.escape (what Django's
autoescape runs, without its per-value overhead).

    {% load image_cards %}
    {% image_cards images show_review=True %}       a whole grid
    {% image_card image %}                           one card (a collection's item)
    {% like_button_for image liked=… like_count=… %} the like button (image page, like view)

The page's context says the rest, as it did for the partials: `selectable` (the select
box), `reactions` (the like button), `show_remixes` (the remix count), `is_new`, `user`,
`request` and `csrf_token`.
"""

from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from django import template
from django.urls import get_script_prefix, reverse
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from gallery.models import (
    THUMBNAIL_SIZES,
    URL_ID_PLACEHOLDER,
    ModerationStatus,
    ReviewStatus,
    Visibility,
    image_url_template,
)

register = template.Library()

CAPTION_CHARS = 120
LIKE_ICON = (
    '<svg class="reaction-icon" viewBox="0 0 24 24" aria-hidden="true"><path d="M12 20.5s-7.5'
    "-4.6-9.3-9.2C1.4 8 3.4 4.5 7 4.5c2 0 3.6 1.1 5 2.9 1.4-1.8 3-2.9 5-2.9 3.6 0 5.6 3.5 4.3 "
    '6.8-1.8 4.6-9.3 9.2-9.3 9.2z"/></svg>'
)
REMIX_ICON = (
    '<svg class="reaction-icon" viewBox="0 0 24 24" aria-hidden="true"><path d="M4 12a8 8 0 '
    "0 1 13.7-5.6L20 8.7M20 4v4.7h-4.7M20 12a8 8 0 0 1-13.7 5.6L4 15.3M4 20v-4.7h4.7\" "
    'fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" '
    'stroke-linejoin="round"/></svg>'
)
SRCSET_SIZES = "(max-width: 640px) 50vw, 260px"
FLAG_BADGE = (
    '<span class="badge badge-danger thumb-flag" title="Only this project sees it until the '
    'moderators decide">Held by moderation</span>'
)
REVIEW_LABELS = dict(ReviewStatus.choices)
VISIBILITY_LABELS = dict(Visibility.choices)


class ImageUrls:
    """An image's URLs by id, each pattern reversed once per grid (gallery.models.image_url
    does the same, asking for the script prefix on every call)."""

    def __init__(self):
        prefix = get_script_prefix()
        self.patterns = {
            name: image_url_template(prefix, name) for name in ("image_detail", "image_file",
                                                                "image_like")
        }
        self.thumbnails = {
            size: image_url_template(prefix, "image_thumbnail", size) for size in THUMBNAIL_SIZES
        }

    def url(self, name, image_id):
        return self.patterns[name].replace(URL_ID_PLACEHOLDER, str(image_id), 1)

    def thumbnail(self, size, image_id):
        return self.thumbnails[size].replace(URL_ID_PLACEHOLDER, str(image_id), 1)


@dataclass(frozen=True)
class CardStyle:
    """What every card of one grid shares."""

    show_review: bool  # the team's review badges: grids only members see
    public_card: bool  # Explore: the caption always shows, with who made it
    is_new: bool
    selectable: bool
    reactions: bool
    show_remixes: bool
    csrf_field: str  # the like form's hidden field (HTML)
    login_url: str  # anonymous viewers: where the like button leads ("" when signed in)
    urls: ImageUrls

    @classmethod
    def of(cls, context, *, show_review=False, public_card=False):
        reactions = bool(context.get("reactions"))
        return cls(
            show_review=bool(show_review),
            public_card=bool(public_card),
            is_new=bool(context.get("is_new")),
            selectable=bool(context.get("selectable")),
            reactions=reactions,
            show_remixes=bool(context.get("show_remixes")),
            csrf_field=csrf_field_of(context) if reactions else "",
            login_url=login_url_of(context) if reactions else "",
            urls=ImageUrls(),
        )


def signed_in(context):
    user = context.get("user")
    return bool(user and user.is_authenticated)


def csrf_field_of(context):
    """What {% csrf_token %} writes, once per grid."""
    token = context.get("csrf_token")
    if not signed_in(context) or not token or token == "NOTPROVIDED":
        return ""
    return f'<input type="hidden" name="csrfmiddlewaretoken" value="{escape(str(token))}">'


def login_url_of(context):
    """For anonymous viewers: the log-in page, back to this one after ("" when signed in)."""
    if signed_in(context):
        return ""
    request = context.get("request")
    here = request.get_full_path() if request is not None else ""
    return f"{reverse('login')}?next={quote(here, safe='/')}"


def like_button(image_id, like_url, *, liked, count, csrf_field, login_url):
    """The like button, or for anonymous viewers (login_url) a link to log in."""
    count = escape(str(count))
    if login_url:
        return (
            f'<a class="reaction reaction-button" href="{escape(login_url)}" '
            f'title="Log in to like it">{LIKE_ICON}<span class="sr-only">Likes:</span>'
            f'<span class="reaction-count">{count}</span></a>'
        )
    like_url = escape(like_url)
    return (
        f'<form class="reaction{" is-on" if liked else ""}" method="post" action="{like_url}" '
        f'hx-post="{like_url}" hx-swap="outerHTML" data-reaction="like-{image_id}">'
        f'{csrf_field}<input type="hidden" name="on" value="{"0" if liked else "1"}">'
        f'<button class="reaction-button" type="submit" '
        f'aria-pressed="{"true" if liked else "false"}" '
        f'title="{"You like it: click to take it back" if liked else "Like"}">{LIKE_ICON}'
        f'<span class="sr-only">Like</span><span class="reaction-count">{count}</span>'
        "</button></form>"
    )


def reactions_bar(image, style):
    like = like_button(
        image.pk, style.urls.url("image_like", image.pk),
        liked=bool(getattr(image, "liked", False)), count=getattr(image, "like_count", ""),
        csrf_field=style.csrf_field, login_url=style.login_url,
    )
    remixes = ""
    if style.show_remixes:
        count = int(image.remix_count)
        remixes = (
            f'<span class="thumb-stat" title="{count} image{"" if count == 1 else "s"} made '
            f'from it">{REMIX_ICON}<span class="sr-only">Remixes:</span>{count}</span>'
        )
    return f'<div class="thumb-reactions">{like}{remixes}</div>'


def card_html(image, style):
    """One card (what templates/gallery's thumb partial wrote), as HTML."""
    pk, urls = int(image.pk), style.urls
    visibility = image.visibility
    flagged = image.moderation_status == ModerationStatus.FAILED
    file_url = urls.url("image_file", pk)
    thumbnails = [size for size in THUMBNAIL_SIZES if image.thumbnail_name(size)]
    # The small thumbnail, or the original while none is made yet.
    thumb_url = urls.thumbnail(THUMBNAIL_SIZES[0], pk) if THUMBNAIL_SIZES[0] in thumbnails \
        else file_url
    srcset = ", ".join(f"{urls.thumbnail(size, pk)} {size}w" for size in thumbnails)
    parts = [
        f'<figure class="thumb{" is-new" if style.is_new else ""}'
        f'{" is-flagged" if flagged else ""}" data-image-id="{pk}">'
        f'<a href="{escape(urls.url("image_detail", pk))}" data-full="{escape(file_url)}"',
        f' data-seed="{int(image.seed)}">'
        if style.show_review or visibility == Visibility.PUBLIC else ">",
        f'<img src="{escape(thumb_url)}"',
        f' srcset="{escape(srcset)}" sizes="{SRCSET_SIZES}"' if srcset else "",
        f' alt="{escape(image.alt_text())}" loading="lazy" decoding="async" '
        f'width="{int(image.width)}" height="{int(image.height)}"></a>',
    ]
    if style.show_review and image.review_status != ReviewStatus.UNREVIEWED:
        badge = "badge-success" if image.review_status == ReviewStatus.APPROVED \
            else "badge-danger"
        label = REVIEW_LABELS.get(image.review_status, image.review_status)
        parts.append(f'<span class="badge thumb-review {badge}">{escape(label)}</span>')
    if flagged:
        parts.append(FLAG_BADGE)
    if visibility != Visibility.PROJECT:
        label = "Link" if visibility == Visibility.UNLISTED \
            else VISIBILITY_LABELS.get(visibility, visibility)
        parts.append(f'<span class="thumb-badge">{escape(label)}</span>')
    if style.selectable:
        parts.append(
            f'<label class="thumb-select"><input type="checkbox" name="image" value="{pk}" '
            f'form="image-select-form" data-select-image><span class="sr-only">Select image '
            f"{pk}</span></label>"
        )
    if style.reactions:
        parts.append(reactions_bar(image, style))
    caption = escape(Truncator(image.prompt).chars(CAPTION_CHARS))
    if style.public_card:
        author = escape(image.created_by.display_name()) if image.created_by_id else ""
        parts.append(
            f'<figcaption class="thumb-public-caption"><span class="thumb-caption-text">'
            f'{caption}</span><span class="thumb-author">by {author}</span></figcaption>'
        )
    else:
        parts.append(f"<figcaption>{caption}</figcaption>")
    parts.append("</figure>")
    return "".join(parts)


@register.simple_tag(takes_context=True)
def image_cards(context, images, show_review=False, public_card=False):
    style = CardStyle.of(context, show_review=show_review, public_card=public_card)
    return mark_safe("\n".join(card_html(image, style) for image in images))


@register.simple_tag(takes_context=True)
def image_card(context, image, show_review=False, public_card=False):
    style = CardStyle.of(context, show_review=show_review, public_card=public_card)
    return mark_safe(card_html(image, style))


@register.simple_tag(takes_context=True)
def like_button_for(context, image, liked=False, like_count=""):
    """The like button alone: the image page's and the like view's answer."""
    return mark_safe(like_button(
        image.pk, image.like_url(), liked=liked, count=like_count,
        csrf_field=csrf_field_of(context), login_url=login_url_of(context),
    ))
