from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "studio.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self):
        from studio.ops import signals  # noqa: F401  (connects the Celery worker hooks)
