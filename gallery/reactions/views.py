"""Like and favourite buttons: on grid cards, in the lightbox and on the image page.

Only for images the user may see (others: 404; anonymous users: the login page). A post
says the state wanted (`on=1` or `on=0`), so a double click never undoes itself.
"""

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from gallery.models import Favourite, Like
from gallery.reactions.services import image_reactions, reaction_toggle
from gallery.views import viewable_image

TEMPLATE = "gallery/reactions.html"


def toggle_response(request, image, model, partial):
    on = request.POST.get("on") == "1"
    reaction_toggle(model=model, image=image, user=request.user, on=on)
    if not request.htmx:
        return redirect(image)
    context = {"image": image, **image_reactions(image, request.user)}
    return render(request, f"{TEMPLATE}#{partial}", context)


@login_required
@require_POST
@viewable_image
def image_like(request, image):
    return toggle_response(request, image, Like, "like")


@login_required
@require_POST
@viewable_image
def image_favourite(request, image):
    return toggle_response(request, image, Favourite, "favourite")
