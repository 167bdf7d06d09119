from django.apps import AppConfig


class ModerationConfig(AppConfig):
    name = "studio.moderation"
    label = "moderation"
    verbose_name = "Moderation"
