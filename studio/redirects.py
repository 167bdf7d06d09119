from django.shortcuts import resolve_url
from django.utils.http import url_has_allowed_host_and_scheme


def safe_next_url(request, wanted, *, fallback):
    """`wanted` (a `next` parameter) when Django's own check finds it a URL of this site,
    over HTTPS when the request came over HTTPS; otherwise `fallback` (a URL or URL name)."""
    if wanted and url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return wanted
    return resolve_url(fallback)
