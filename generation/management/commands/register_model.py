from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generation.models import DiffusionModel, ModelFamily


def register_tiny_model():
    """Build (once) and register the tiny random-weight SD1.5-architecture model."""
    # Imported here: building it needs torch, which only workers and the embedded mode have.
    from gpu_workers.tiny_models import TINY_SD15_NAME, build_tiny_sd15

    path = build_tiny_sd15(settings.STUDIO_TINY_MODEL_DIR)
    model, _ = DiffusionModel.objects.update_or_create(
        name=TINY_SD15_NAME,
        defaults={
            "source": str(path),
            "family": ModelFamily.SD15,
            "default_width": 256,
            "default_height": 256,
            "default_steps": 20,
            "default_guidance_scale": 7.0,
            "is_enabled": True,
        },
    )
    return model


class Command(BaseCommand):
    help = "Register a model (Hub id or local diffusers folder) in the library, or --tiny."

    def add_arguments(self, parser):
        parser.add_argument("source", nargs="?", help="Hub id or local diffusers folder path")
        parser.add_argument("--name", help="Name shown in the studio (default: the source)")
        parser.add_argument("--family", choices=ModelFamily.values, default=ModelFamily.SD15)
        parser.add_argument("--width", type=int, default=512)
        parser.add_argument("--height", type=int, default=512)
        parser.add_argument("--steps", type=int, default=25)
        parser.add_argument("--guidance-scale", type=float, default=7.0)
        parser.add_argument(
            "--tiny", action="store_true", help="Build and register the tiny offline test model"
        )

    def handle(self, *args, **options):
        if options["tiny"]:
            model = register_tiny_model()
        elif options["source"]:
            model, _ = DiffusionModel.objects.update_or_create(
                name=options["name"] or options["source"],
                defaults={
                    "source": options["source"],
                    "family": options["family"],
                    "default_width": options["width"],
                    "default_height": options["height"],
                    "default_steps": options["steps"],
                    "default_guidance_scale": options["guidance_scale"],
                    "is_enabled": True,
                },
            )
        else:
            raise CommandError("Give a Hub id or folder path, or --tiny.")
        self.stdout.write(f"Registered model {model.name!r} ({model.source}).")
