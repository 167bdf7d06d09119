"""Prometheus metrics recorded in-process (prometheus-client's default registry).

Django-free so that Celery workers and the sweeper import it cheaply. Web nodes serve
these on /metrics (studio.ops.views); Celery workers on STUDIO_WORKER_METRICS_PORT
(studio.ops.signals). Metrics computed from the database at scrape time live in
studio.ops.collectors; the GPU engine's own are in gpu_workers.metrics.
"""

from prometheus_client import Counter, Histogram

SWEEPER_ACTIONS = Counter(
    "studio_sweeper_actions_total",
    "Jobs and runs the sweeper acted on (requeued, failed, redispatched...), by action.",
    ["action"],
)

REQUEST_LATENCY = Histogram(
    "studio_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, URL route pattern and status class.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
