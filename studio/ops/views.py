import ipaddress

from django.conf import settings
from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from studio.ops.collectors import StudioCollector
from studio.ops.readiness import readiness_checks


@never_cache
@require_GET
def healthz(request):
    """The process is up and answering; touches nothing else (liveness)."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    """Database, Redis (when configured) and media storage reachable (readiness)."""
    reasons = readiness_checks()
    ready = not any(reasons.values())
    return JsonResponse(
        {
            "status": "ok" if ready else "unavailable",
            "checks": {name: reason or "ok" for name, reason in reasons.items()},
        },
        status=200 if ready else 503,
    )


def metrics_allowed(address):
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in settings.STUDIO_METRICS_ALLOWED_NETWORKS)


@never_cache
@require_GET
def metrics(request):
    """Prometheus' text format: this process's metrics, then those read from the database
    at this scrape. Only for STUDIO_METRICS_ALLOWED_IPS; everyone else gets a 404."""
    if not metrics_allowed(request.META.get("REMOTE_ADDR")):
        raise Http404
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(StudioCollector())
    return HttpResponse(
        generate_latest(REGISTRY) + generate_latest(scraped), content_type=CONTENT_TYPE_LATEST
    )
