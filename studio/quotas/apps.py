from django.apps import AppConfig


class QuotasConfig(AppConfig):
    name = "studio.quotas"
    label = "quotas"
    verbose_name = "Quotas and GPU budgets"

    def ready(self):
        from generation import admission
        from generation.queue import wait_estimator_register
        from studio.quotas import signals  # noqa: F401  (connects its receivers)
        from studio.quotas.costs import jobs_seconds_left
        from studio.quotas.services import generation_quota_check, training_quota_check

        # Limits and budgets generation checks before it takes work.
        admission.register(admission.job_cost_checks, generation_quota_check)
        admission.register(admission.training_cost_checks, training_quota_check)
        # The time left that the queue cards show.
        wait_estimator_register(jobs_seconds_left)
