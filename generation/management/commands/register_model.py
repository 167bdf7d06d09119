from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generation.models import (
    SAMPLER_CHOICES,
    DiffusionModel,
    ModelFamily,
    ModelKind,
    SourceKind,
    guess_source_kind,
)
from studio.accounts.models import Role


def register_tiny_model():
    """Build (once) and register the tiny random-weight SD1.5-architecture model, and a
    tiny ControlNet and IP-Adapter for it (built next to it), so that every section of the
    studio works offline."""
    # Imported here: building it needs torch, which only workers and the embedded mode have.
    from gpu_workers.tiny_models import (
        TINY_CONTROLNET_NAME,
        TINY_IP_ADAPTER_NAME,
        TINY_SD15_NAME,
        build_tiny_controlnet,
        build_tiny_ip_adapter,
        build_tiny_sd15,
    )

    path = build_tiny_sd15(settings.STUDIO_TINY_MODEL_DIR)
    companions = [
        (TINY_CONTROLNET_NAME, ModelKind.CONTROLNET, build_tiny_controlnet),
        (TINY_IP_ADAPTER_NAME, ModelKind.IP_ADAPTER, build_tiny_ip_adapter),
    ]
    for name, kind, build in companions:
        DiffusionModel.objects.update_or_create(
            name=name,
            defaults={
                "source": str(build(path.parent / name)),
                "source_kind": SourceKind.FOLDER,
                "kind": kind,
                "family": ModelFamily.SD15,
                "is_enabled": True,
            },
        )
    model, _ = DiffusionModel.objects.update_or_create(
        name=TINY_SD15_NAME,
        defaults={
            "source": str(path),
            "source_kind": SourceKind.FOLDER,
            "kind": ModelKind.CHECKPOINT,
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
    help = (
        "Register a model in the library (a Hub id, a local diffusers folder or a local "
        ".safetensors file), or --tiny. The same checks as the library's Add model page "
        "apply; registering an existing name updates it."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "source", nargs="?", help="Hub id (owner/name), diffusers folder or .safetensors file"
        )
        parser.add_argument("--name", help="Name shown in the studio (default: the source)")
        parser.add_argument("--kind", choices=ModelKind.values, default=ModelKind.CHECKPOINT)
        parser.add_argument(
            "--source-kind",
            choices=SourceKind.values,
            help="hub, folder or file (default: guessed from the source)",
        )
        parser.add_argument("--family", choices=ModelFamily.values, default=ModelFamily.SD15)
        parser.add_argument(
            "--config",
            default="",
            help="single .safetensors checkpoints: a diffusers folder or Hub id with its "
            "component configs (needed offline)",
        )
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--width", type=int,
            help="default width (default: 1024 for SDXL, FLUX.1 and SD 3.x, else 512)",
        )
        parser.add_argument(
            "--height", type=int,
            help="default height (default: 1024 for SDXL, FLUX.1 and SD 3.x, else 512)",
        )
        parser.add_argument("--steps", type=int, default=25)
        parser.add_argument(
            "--guidance-scale", type=float,
            help="default CFG scale (default: 3.5 for FLUX.1, whose [dev] takes it as its "
            "distilled guidance, else 7)",
        )
        parser.add_argument(
            "--sampler",
            default="",
            choices=["", *(name for name, _ in SAMPLER_CHOICES)],
            metavar="SAMPLER",
            help="default A1111 sampler name, e.g. 'DPM++ 2M Karras' (default: the model's own)",
        )
        parser.add_argument(
            "--min-role",
            choices=[Role.EDITOR, Role.ADMIN, Role.OWNER],
            default=Role.EDITOR,
            help="least team role that may generate with it (teams may set their own)",
        )
        parser.add_argument(
            "--disabled", action="store_true", help="register it switched off for every team"
        )
        parser.add_argument(
            "--tiny", action="store_true", help="Build and register the tiny offline test model"
        )

    def handle(self, *args, **options):
        if options["tiny"]:
            model = register_tiny_model()
        elif options["source"]:
            model = self.register(options)
        else:
            raise CommandError("Give a Hub id, folder or .safetensors path, or --tiny.")
        self.stdout.write(f"Registered model {model.name!r} ({model.source}).")

    def register(self, options):
        # The library's form is the one validator: same checks and messages as the web page.
        from generation.library.forms import DiffusionModelForm

        source = options["source"]
        name = options["name"] or source
        # The size each family was trained at, and FLUX.1 [dev]'s usual distilled guidance.
        family = options["family"]
        side = 1024 if family in (ModelFamily.SDXL, ModelFamily.FLUX1, ModelFamily.SD3) else 512
        guidance = 3.5 if family == ModelFamily.FLUX1 else 7.0
        data = {
            "name": name,
            "kind": options["kind"],
            "family": options["family"],
            "source_kind": options["source_kind"] or guess_source_kind(source),
            "source": source,
            "config_source": options["config"],
            "description": options["description"],
            "default_width": side if options["width"] is None else options["width"],
            "default_height": side if options["height"] is None else options["height"],
            "default_steps": options["steps"],
            "default_guidance_scale": guidance
            if options["guidance_scale"] is None else options["guidance_scale"],
            "default_sampler": options["sampler"],
            "min_role": options["min_role"],
            "is_enabled": not options["disabled"],
        }
        form = DiffusionModelForm(data, instance=DiffusionModel.objects.filter(name=name).first())
        if not form.is_valid():
            problems = "\n".join(
                f"  {form[field].label if field in form.fields else field}: {message}"
                for field, messages in form.errors.items()
                for message in messages
            )
            raise CommandError(f"{name} was not registered:\n{problems}")
        return form.save()
