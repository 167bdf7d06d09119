"""Settings, all read from the environment.

Unset REDIS_URL means the embedded mode: in-memory channel layer and an in-process
worker thread. Set, it means channels-redis and Celery workers on that broker.
"""

import ipaddress
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_list(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and not env_bool("STUDIO_ALLOW_INSECURE_KEY", False):
        raise ImproperlyConfigured("Set SECRET_KEY (or DEBUG=1 for local development).")
    SECRET_KEY = "insecure-development-key-" + "x" * 40

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "studio.accounts",
    "studio.realtime",
    "studio.moderation",
    "generation",
    "gallery",
    "studio.quotas",
    # The HTTP API (/api/v1/) and personal access tokens; ninja serves its docs page's
    # scripts from our static files (the CSP allows no CDN).
    "studio.api",
    "ninja",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]
# A view that can't reach the database answers 503 with Retry-After, a full disk 507.
MIDDLEWARE += ["studio.middleware.UnavailableMiddleware"]

ROOT_URLCONF = "studio.urls"
ASGI_APPLICATION = "studio.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

VAR_DIR = BASE_DIR / "var"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'studio.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(exist_ok=True)
    # The in-process worker writes while the web thread reads and writes: wait instead of
    # failing. IMMEDIATE takes the write lock when a transaction begins, so two writers
    # queue on the timeout rather than one failing at once with "database is locked" when
    # its read lock can't be upgraded; WAL lets pages read while a worker writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=20,
        transaction_mode="IMMEDIATE",
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    )
# Web processes on PostgreSQL: a psycopg connection pool per process (Django 5.1+), so a
# request takes an open connection instead of paying for a new one (a few ms each, more
# over TLS). Under ASGI each request's sync code runs in a thread of its own, holding a
# connection while it runs: the pool's size caps the requests a process works on at once.
# DATABASE_CONN_MAX_AGE persistent connections are the alternative (not both; Django's
# advice under ASGI is the pool).
DATABASE_POOL_SIZE = int(os.environ.get("DATABASE_POOL_SIZE", "0"))
if DATABASE_POOL_SIZE and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DATABASE_POOL_SIZE,
        # Waiting longer than this for a free connection answers 503 (UnavailableMiddleware):
        # long enough to ride out a burst (a log-in holds its own while its password hash runs).
        "timeout": 30,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Argon2 at Django's parameters (studio/accounts/hashers.py says why); passwords hashed
# with Django's default PBKDF2 still log in and are rehashed with Argon2 when they do.
PASSWORD_HASHERS = [
    "studio.accounts.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
# Web nodes serve their own static files (after collectstatic); development reads them
# straight from static/.
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", DEBUG)

# Media is never served from a public path: image views check permissions and stream it.
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
STORAGES = {
    "default": {
        # Files appear complete or not at all, and never outlive a rolled-back row.
        "BACKEND": os.environ.get("STORAGE_BACKEND", "studio.storage.AtomicFileSystemStorage"),
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# S3-compatible media (MinIO, AWS S3, R2...) through django-storages: `pip install ".[s3]"`
# and STORAGE_BACKEND=storages.backends.s3.S3Storage. Keys come from AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY (or boto3's usual chain, e.g. an instance role). Objects stay private:
# views stream them after checking the viewer's role. Names never overwrite each other, as on
# the filesystem.
if STORAGES["default"]["BACKEND"] == "storages.backends.s3.S3Storage":
    if not os.environ.get("AWS_STORAGE_BUCKET_NAME"):
        raise ImproperlyConfigured("Set AWS_STORAGE_BUCKET_NAME for STORAGE_BACKEND=S3Storage.")
    STORAGES["default"]["OPTIONS"] = {
        "bucket_name": os.environ["AWS_STORAGE_BUCKET_NAME"],
        "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
        "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
        "default_acl": "private",
        "file_overwrite": False,
        # An object opened for reading is downloaded whole first: past this size into a
        # temporary file, not memory (a LoRA download is up to STUDIO_MAX_LORA_BYTES).
        "max_memory_size": 16 * 1024 * 1024,
    }

# Realtime and work dispatch.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = REDIS_URL or None
# The queue GPU workers consume (`celery -A studio worker -Q gpu`); one name per kind of GPU
# host if a deployment wants to route jobs, e.g. "gpu-h100".
STUDIO_GPU_QUEUE = os.environ.get("STUDIO_GPU_QUEUE", "gpu")
# CPU work (thumbnails): `celery -A studio worker -Q default` on any host.
STUDIO_CPU_QUEUE = os.environ.get("STUDIO_CPU_QUEUE", "default")
# LoRA training runs (minutes to hours): a queue of their own, so that they never hold up
# short generation jobs; `celery -A studio worker -Q train` on GPU hosts.
STUDIO_TRAIN_QUEUE = os.environ.get("STUDIO_TRAIN_QUEUE", "train")
# Image scans (classifier and perceptual hash) run on CPU workers consuming this queue.
STUDIO_MODERATION_QUEUE = os.environ.get("STUDIO_MODERATION_QUEUE", "moderation")
CELERY_TASK_ROUTES = {
    "generation.tasks.run_generation_job": {"queue": STUDIO_GPU_QUEUE},
    "generation.tasks.run_training": {"queue": STUDIO_TRAIN_QUEUE},
    "gallery.tasks.make_thumbnails": {"queue": STUDIO_CPU_QUEUE},
    "studio.moderation.tasks.scan_image": {"queue": STUDIO_MODERATION_QUEUE},
    "gallery.tasks.purge_deleted_images": {"queue": STUDIO_CPU_QUEUE},
    "generation.tasks.sweep": {"queue": STUDIO_CPU_QUEUE},
    "generation.tasks.hash_model": {"queue": STUDIO_CPU_QUEUE},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Task threads: a GPU worker's are as many as its engine batches (studio/celery.py), each
# handing its job to the device's one engine loop (gpu_workers.engine); other workers take
# Celery's default, a thread per CPU, unless started with --concurrency.
CELERY_WORKER_POOL = "threads"
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Longer than the longest job, so an unacked message is redelivered only after a real loss.
VISIBILITY_TIMEOUT_S = int(os.environ.get("STUDIO_VISIBILITY_TIMEOUT_S", str(2 * 60 * 60)))
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": VISIBILITY_TIMEOUT_S,
    # Look for messages of dead workers a few times per visibility timeout (kombu's
    # default sweep is every ~100 s).
    "unacked_restore_interval": max(1, min(10, VISIBILITY_TIMEOUT_S // 4)),
    "unacked_restore_throttle": 1 if VISIBILITY_TIMEOUT_S < 600 else 10,
}

# The model used when a user configured none (a Hub id or a local diffusers folder).
STUDIO_DEFAULT_MODEL = os.environ.get("STUDIO_DEFAULT_MODEL", "")
STUDIO_TINY_MODEL_DIR = Path(
    os.environ.get("STUDIO_TINY_MODEL_DIR", VAR_DIR / "models" / "tiny-sd15")
)
STUDIO_MAX_PIXELS = int(os.environ.get("STUDIO_MAX_PIXELS", str(1536 * 1536)))
STUDIO_MAX_STEPS = int(os.environ.get("STUDIO_MAX_STEPS", "150"))
STUDIO_MAX_BATCH_SIZE = int(os.environ.get("STUDIO_MAX_BATCH_SIZE", "8"))
STUDIO_MAX_BATCH_COUNT = int(os.environ.get("STUDIO_MAX_BATCH_COUNT", "16"))
# Uploaded source images (img2img and later modes).
STUDIO_MAX_UPLOAD_BYTES = int(os.environ.get("STUDIO_MAX_UPLOAD_BYTES", str(20 * 1024 * 1024)))
STUDIO_MAX_UPLOAD_PIXELS = int(os.environ.get("STUDIO_MAX_UPLOAD_PIXELS", str(4096 * 4096)))
# Pixels one request's images may decode together (thirty subject photos, the generate
# form's images), refused from their headers before any is decoded.
STUDIO_MAX_REQUEST_PIXELS = int(
    os.environ.get("STUDIO_MAX_REQUEST_PIXELS", str(8 * 4096 * 4096))
)
# LoRA files uploaded to a team's library (.safetensors only), and LoRAs stacked per job.
STUDIO_MAX_LORA_BYTES = int(os.environ.get("STUDIO_MAX_LORA_BYTES", str(1024**3)))
STUDIO_MAX_LORAS_PER_JOB = int(os.environ.get("STUDIO_MAX_LORAS_PER_JOB", "8"))
# A running job's worker renews its lease at every step and every lease/4 s while a model
# loads; a lapsed lease means it died, and the sweeper queues the job again.
STUDIO_JOB_LEASE_S = float(os.environ.get("STUDIO_JOB_LEASE_S", "60"))
# A running job reports its progress (a row UPDATE, a cancel check, an event) at most this
# often, and always at its first and last step: with many jobs in a batch on a fast GPU, a
# write per step per job would cost the database more than the steps cost the GPU.
STUDIO_PROGRESS_INTERVAL_S = float(os.environ.get("STUDIO_PROGRESS_INTERVAL_S", "0.25"))
# Attempts that did work before a job fails; claims also bound workers dying before a step.
STUDIO_JOB_MAX_ATTEMPTS = int(os.environ.get("STUDIO_JOB_MAX_ATTEMPTS", "3"))
STUDIO_JOB_MAX_CLAIMS = int(os.environ.get("STUDIO_JOB_MAX_CLAIMS", "10"))
# The sweeper (generation.sweeper): Celery beat sends it to the CPU queue this often, or the
# embedded mode's thread runs it. Lapsed leases are taken back within one interval.
STUDIO_SWEEP_INTERVAL_S = float(os.environ.get("STUDIO_SWEEP_INTERVAL_S", "5"))
CELERY_BEAT_SCHEDULE = {
    "sweep": {
        "task": "generation.tasks.sweep",
        "schedule": STUDIO_SWEEP_INTERVAL_S,
        # A sweep that waited longer than an interval is superseded by the next one.
        "options": {"queue": STUDIO_CPU_QUEUE, "expires": STUDIO_SWEEP_INTERVAL_S},
    },
}
# Deleted images can be restored for this long (default a day), then are purged with
# their files (gallery.deletion.services; `manage.py purge_deleted_images`).
STUDIO_DELETE_UNDO_SECONDS = int(os.environ.get("STUDIO_DELETE_UNDO_SECONDS", str(24 * 3600)))

# Per-user limits (studio.quotas; README "Quotas and GPU budgets"): site defaults and the
# most a team's admins may set for their members.
STUDIO_USER_MAX_ACTIVE_IMAGES = int(os.environ.get("STUDIO_USER_MAX_ACTIVE_IMAGES", "100"))
STUDIO_USER_IMAGES_PER_HOUR = int(os.environ.get("STUDIO_USER_IMAGES_PER_HOUR", "1000"))
STUDIO_USER_MAX_TRAINING_RUNS = int(os.environ.get("STUDIO_USER_MAX_TRAINING_RUNS", "1"))

# Moderation (studio.moderation; README "Moderation"). The image scanner is a dotted path
# to a class with scan(picture) -> ScanResult; blank: NudeNet when the `moderation` extra is
# installed, else a scanner that records "no classifier installed" and passes.
STUDIO_IMAGE_SCANNER = os.environ.get("STUDIO_IMAGE_SCANNER", "")
# Default scan thresholds (a site policy may set others; a team's may only be stricter).
STUDIO_SCAN_FLAG_AT = float(os.environ.get("STUDIO_SCAN_FLAG_AT", "0.5"))
STUDIO_SCAN_BLOCK_AT = float(os.environ.get("STUDIO_SCAN_BLOCK_AT", "0.85"))
# A new image whose PDQ hash is within this many bits (of 256) of removed content is blocked.
STUDIO_HASH_MATCH_DISTANCE = int(os.environ.get("STUDIO_HASH_MATCH_DISTANCE", "31"))
# Strikes from removals expire; this many active ones suspend publishing / generating.
STUDIO_STRIKE_DAYS = int(os.environ.get("STUDIO_STRIKE_DAYS", "90"))
STUDIO_STRIKES_SUSPEND_PUBLISHING = int(os.environ.get("STUDIO_STRIKES_SUSPEND_PUBLISHING", "2"))
STUDIO_STRIKES_SUSPEND_GENERATION = int(os.environ.get("STUDIO_STRIKES_SUSPEND_GENERATION", "3"))
STUDIO_REPORTS_PER_HOUR = int(os.environ.get("STUDIO_REPORTS_PER_HOUR", "10"))

# Production hardening, on whenever DEBUG is off.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True

# Operations (studio.ops; README "Operations"): /healthz, /readyz, /metrics, JSON logs.
INSTALLED_APPS += ["studio.ops"]
# First, so that every response (redirects and errors too) is timed and carries its id.
MIDDLEWARE = [
    "studio.ops.middleware.request_id_middleware",
    "studio.ops.middleware.request_latency_middleware",
    *MIDDLEWARE,
]
# Load balancers and Prometheus probe over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# Addresses or networks (CIDR) that may read /metrics; everyone else gets a 404.
STUDIO_METRICS_ALLOWED_IPS = env_list("STUDIO_METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
try:
    STUDIO_METRICS_ALLOWED_NETWORKS = [
        ipaddress.ip_network(item, strict=False) for item in STUDIO_METRICS_ALLOWED_IPS
    ]
except ValueError as error:
    raise ImproperlyConfigured(f"STUDIO_METRICS_ALLOWED_IPS: {error}") from error
# Celery workers serve their metrics (engine, model cache, sweeper) here; unset: off.
_worker_metrics_port = os.environ.get("STUDIO_WORKER_METRICS_PORT", "")
if _worker_metrics_port and not (
    _worker_metrics_port.isdecimal() and 0 < int(_worker_metrics_port) < 65536
):
    raise ImproperlyConfigured(
        f"STUDIO_WORKER_METRICS_PORT must be a port number, not {_worker_metrics_port!r}"
    )
STUDIO_WORKER_METRICS_PORT = int(_worker_metrics_port) if _worker_metrics_port else None
STUDIO_WORKER_METRICS_ADDR = os.environ.get("STUDIO_WORKER_METRICS_ADDR", "0.0.0.0")
# text: plain messages for a terminal; json: one object per line with the time, level,
# logger and the request, job, run and task ids, for a log pipeline.
STUDIO_LOG_FORMAT = os.environ.get("STUDIO_LOG_FORMAT", "text")
if STUDIO_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"STUDIO_LOG_FORMAT must be text or json, not {STUDIO_LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"log_context": {"()": "studio.ops.logging.LogContextFilter"}},
    "formatters": {
        "text": {"format": "%(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": STUDIO_LOG_FORMAT,
            "filters": ["log_context"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # Through the root's handler only: Django's own console handler (DEBUG) would
        # write each of its lines a second time, as plain text.
        "django": {"handlers": [], "level": "INFO"},
        # A line per request (studio.ops.middleware) where daphne's access log, plain
        # text, won't do; run daphne with -v 0 then.
        "studio.access": {"level": "INFO" if STUDIO_LOG_FORMAT == "json" else "WARNING"},
    },
}
# Celery replaces the root logger's handlers with its own text format unless told not to.
CELERY_WORKER_HIJACK_ROOT_LOGGER = STUDIO_LOG_FORMAT == "text"

# Rate limits and account safety (studio/throttling.py; README "Rate limits and account
# safety"). Counters live in the cache, which is Redis when REDIS_URL is set so that every
# web node sees the same counts; the embedded mode is one process, so its memory will do.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "studio",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # django-axes warns that a process-local cache isn't shared: here there is one process.
    SILENCED_SYSTEM_CHECKS = ["axes.W001"]
# Sessions are read from that cache, and from the database only when the cache lost them
# (written to both): every signed-in request read its session with a query of its own.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
# Failed log-ins: django-axes locks an account, and separately an address, after this many
# failures, until this many minutes have passed without another.
INSTALLED_APPS += ["axes"]
MIDDLEWARE += ["csp.middleware.CSPMiddleware", "axes.middleware.AxesMiddleware"]
AUTHENTICATION_BACKENDS = [
    "studio.accounts.backends.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = int(os.environ.get("STUDIO_LOGIN_FAILURES", "5"))
STUDIO_LOGIN_LOCKOUT_MINUTES = int(os.environ.get("STUDIO_LOGIN_LOCKOUT_MINUTES", "15"))
AXES_COOLOFF_TIME = STUDIO_LOGIN_LOCKOUT_MINUTES / 60  # hours, as axes reads a float
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "studio.throttling.login_locked_out"
AXES_VERBOSE = False
# Per user (per address for sign-ups); 0 turns a limit off.
STUDIO_GENERATE_POSTS_PER_MINUTE = int(os.environ.get("STUDIO_GENERATE_POSTS_PER_MINUTE", "30"))
STUDIO_UPLOADS_PER_HOUR = int(os.environ.get("STUDIO_UPLOADS_PER_HOUR", "60"))
STUDIO_IMPORTS_PER_MINUTE = int(os.environ.get("STUDIO_IMPORTS_PER_MINUTE", "30"))
# A ControlNet edge preview decodes its posted image and runs Canny on it.
STUDIO_PREVIEWS_PER_MINUTE = int(os.environ.get("STUDIO_PREVIEWS_PER_MINUTE", "30"))
# The token counter tokenises a prompt box's text on each (debounced) change.
STUDIO_TOKEN_COUNTS_PER_MINUTE = int(os.environ.get("STUDIO_TOKEN_COUNTS_PER_MINUTE", "120"))
# The A1111 and OpenAI APIs answer when the job is done, as those APIs do: a request waits
# at most this long, then its jobs are canceled and it gets a 504.
STUDIO_API_WAIT_SECONDS = float(os.environ.get("STUDIO_API_WAIT_SECONDS", "600"))
# How long the image links of the OpenAI API's `url` responses work.
STUDIO_API_URL_SECONDS = int(os.environ.get("STUDIO_API_URL_SECONDS", "3600"))
STUDIO_SIGNUPS_PER_HOUR_PER_IP = int(os.environ.get("STUDIO_SIGNUPS_PER_HOUR_PER_IP", "10"))
# Each request mails someone: a cap per address keeps the form from flooding inboxes.
STUDIO_PASSWORD_RESETS_PER_HOUR_PER_IP = int(
    os.environ.get("STUDIO_PASSWORD_RESETS_PER_HOUR_PER_IP", "5")
)
# Open project sockets per user, across all web nodes; a socket's slot lapses this long
# after its process stopped renewing it (a crashed node frees its users' slots).
STUDIO_SOCKETS_PER_USER = int(os.environ.get("STUDIO_SOCKETS_PER_USER", "20"))
STUDIO_SOCKET_SLOT_TTL_S = int(os.environ.get("STUDIO_SOCKET_SLOT_TTL_S", "90"))
# Password reset mails go through this backend: the console (the server's output) in the
# embedded mode, SMTP (EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD,
# EMAIL_USE_TLS) when REDIS_URL is set, unless EMAIL_BACKEND says otherwise.
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if REDIS_URL
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "studio@localhost")
# Content-Security-Policy (django-csp) on every response: scripts and styles only from our
# own static files, no inline scripts, no eval; images from our views, data: and blob: URLs
# (the mask painter's canvas); sockets and fetches to our own origin.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Time filters ("just now", "3 hours ago", "2 min 5 s") in every template without a load.
TEMPLATES[0]["OPTIONS"]["builtins"] = ["studio.time_filters"]
