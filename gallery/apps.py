from django.apps import AppConfig


class GalleryConfig(AppConfig):
    name = "gallery"

    def ready(self):
        from studio.uploads import pillow_limit_apply

        pillow_limit_apply()
