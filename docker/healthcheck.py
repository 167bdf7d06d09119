"""A container healthcheck for the web: GET one of its health URLs on this container.

    python docker/healthcheck.py /healthz   # the process answers (the image's HEALTHCHECK)
    python docker/healthcheck.py /readyz    # database, Redis and media storage reachable

Exits 0 on a 200 answer, 1 otherwise. The request names a host the web allows (the first of
ALLOWED_HOSTS) and says it came over HTTPS, as the proxy in front would, so that neither the
host check nor the HTTPS redirect answers in the view's place. Standard library only: slim
images have no curl.
"""

import os
import sys
import urllib.error
import urllib.request

WEB = "http://127.0.0.1:8000"  # uvicorn in this container (the image's CMD)


def allowed_host():
    hosts = [host.strip() for host in os.environ.get("ALLOWED_HOSTS", "").split(",")]
    first = next((host for host in hosts if host and host != "*"), "localhost")
    return first.lstrip(".")  # ".example.org" allows example.org itself too


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect (to the login page, to HTTPS) is no health answer: it fails the check."""

    def redirect_request(self, *args, **kwargs):
        return None


def main(path):
    request = urllib.request.Request(
        WEB + path,
        headers={"Host": allowed_host(), "X-Forwarded-Proto": "https"},
    )
    opener = urllib.request.build_opener(NoRedirects)
    try:
        with opener.open(request, timeout=5) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"{path}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/healthz"))
