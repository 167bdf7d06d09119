from django.apps import AppConfig


class QuotasConfig(AppConfig):
    name = "studio.quotas"
    label = "quotas"
    verbose_name = "Quotas and GPU budgets"

    def ready(self):
        from studio.quotas import signals  # noqa: F401  (connects its receivers)
