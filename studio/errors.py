"""The 500 page, rendered from a plain context: no context processors, no signed-in user,
nothing that could query a database that may be the reason for the error."""

from django.http import HttpResponseServerError
from django.template import loader


def server_error(request):
    """Django's handler500 with the request's id on the page: the error's log lines carry
    it (studio.ops.middleware), so whoever reports it can be matched to them."""
    template = loader.get_template("500.html")
    context = {"request_id": getattr(request, "request_id", "")}
    return HttpResponseServerError(template.render(context))
