"""Rate limits on what is costly or abusable, counted in the shared cache (Redis when
REDIS_URL is set) so that every web node sees one count: django-ratelimit's counters for
generate posts, uploads, imports, sign-ups and password resets, django-axes for failed log-ins. A
throttled request gets a 429 with Retry-After, as a page, a JSON body or an HTMX notice."""

import math
from functools import wraps

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django_ratelimit.core import get_usage

PERIODS = {"m": "minute", "h": "hour"}


def throttled_response(request, *, retry_after, reason):
    """A 429 that says why and in how many seconds to try again."""
    retry_after = max(1, math.ceil(retry_after))
    if request.get_preferred_type(["text/html", "application/json"]) == "application/json":
        response = JsonResponse(
            {"error": "too_many_requests", "detail": reason, "retry_after": retry_after},
            status=429,
        )
    else:
        context = {"reason": reason, "retry_after": retry_after,
                   "retry_minutes": math.ceil(retry_after / 60)}
        template = "429.html"
        if request.htmx:
            template += "#throttled-notice"
        response = render(request, template, context, status=429)
        if request.htmx:
            # The page the request came from stays; the notice is added to it.
            response["HX-Retarget"] = "body"
            response["HX-Reswap"] = "beforeend"
    response["Retry-After"] = str(retry_after)
    return response


def rate_limited(*, group, setting, per, key="user", what):
    """Allow a view's POSTs `settings.<setting>` times per `per` ("m" or "h") per user (or
    per address with key="ip"); past that, a 429 saying when to retry. 0 means no limit."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            limit = getattr(settings, setting)
            if limit and request.method == "POST":
                usage = get_usage(
                    request, group=group, key=key, rate=f"{limit}/{per}", increment=True
                )
                if usage["should_limit"]:
                    reason = f"You have reached the limit of {limit} {what} per {PERIODS[per]}."
                    return throttled_response(
                        request, retry_after=usage["time_left"], reason=reason
                    )
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def login_locked_out(request, original_response=None, credentials=None):
    """django-axes' lockout response: the account or the address failed too often."""
    minutes = settings.STUDIO_LOGIN_LOCKOUT_MINUTES
    reason = (
        f"Too many failed log-ins for this account or from your address: log-ins are "
        f"paused for {minutes} minutes after the last failed one."
    )
    return throttled_response(request, retry_after=minutes * 60, reason=reason)


generate_rate_limited = rate_limited(
    group="generate", setting="STUDIO_GENERATE_POSTS_PER_MINUTE", per="m", what="generate requests"
)
# LoRA, embedding and subject image uploads share one count.
upload_rate_limited = rate_limited(
    group="upload", setting="STUDIO_UPLOADS_PER_HOUR", per="h", what="uploads"
)
import_rate_limited = rate_limited(
    group="import", setting="STUDIO_IMPORTS_PER_MINUTE", per="m", what="parameter imports"
)
preview_rate_limited = rate_limited(
    group="preview", setting="STUDIO_PREVIEWS_PER_MINUTE", per="m", what="edge previews"
)
# The studio's token counter posts as the user types (debounced), two boxes at a time.
token_count_rate_limited = rate_limited(
    group="token-count", setting="STUDIO_TOKEN_COUNTS_PER_MINUTE", per="m",
    what="token counts",
)
signup_rate_limited = rate_limited(
    group="signup", setting="STUDIO_SIGNUPS_PER_HOUR_PER_IP", per="h", key="ip",
    what="sign-ups from one address",
)
password_reset_rate_limited = rate_limited(
    group="password-reset", setting="STUDIO_PASSWORD_RESETS_PER_HOUR_PER_IP", per="h",
    key="ip", what="password reset requests from one address",
)
