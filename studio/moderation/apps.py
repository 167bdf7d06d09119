from django.apps import AppConfig


class ModerationConfig(AppConfig):
    name = "studio.moderation"
    label = "moderation"
    verbose_name = "Moderation"

    def ready(self):
        from generation.sweeper import repair_register
        from studio.moderation.repairs import scans_resend

        repair_register(scans_resend)
