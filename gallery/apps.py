from django.apps import AppConfig


class GalleryConfig(AppConfig):
    name = "gallery"

    def ready(self):
        from gallery.projects import projects_with_images
        from gallery.repairs import thumbnails_resend
        from generation.sweeper import repair_register
        from studio.accounts.project_cards import with_images_register
        from studio.uploads import pillow_limit_apply

        pillow_limit_apply()
        repair_register(thumbnails_resend)
        with_images_register(projects_with_images)
