from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "studio.ops"
    label = "ops"
    verbose_name = "Operations"
