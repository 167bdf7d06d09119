from django.apps import AppConfig


class ModerationConfig(AppConfig):
    name = "studio.moderation"
    label = "moderation"
    verbose_name = "Moderation"

    def ready(self):
        from gallery.publication import gate_register
        from gallery.signals import image_generated
        from generation import admission
        from generation.sweeper import repair_register
        from studio.moderation.gate import ModerationGate
        from studio.moderation.repairs import scans_resend
        from studio.moderation.scanning import image_generated_scan, subject_image_screen
        from studio.moderation.services import generation_screen, screen_generation_form

        repair_register(scans_resend)
        gate_register(ModerationGate())
        image_generated.connect(image_generated_scan)
        # What generation checks before it takes work.
        admission.register(admission.form_checks, screen_generation_form)
        admission.register(admission.prompt_checks, generation_screen)
        admission.register(admission.subject_image_checks, subject_image_screen)
