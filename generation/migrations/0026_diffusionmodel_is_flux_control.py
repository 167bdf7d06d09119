from django.db import migrations, models


def mark_flux_control_models(apps, schema_editor):
    """FLUX.1 checkpoints registered before are read as the library reads a new one."""
    from generation.library.sources import is_flux_control

    DiffusionModel = apps.get_model("generation", "DiffusionModel")
    flux_checkpoints = DiffusionModel.objects.filter(kind="checkpoint", family="flux1")
    for model in flux_checkpoints:
        if is_flux_control(model.source, source_kind=model.source_kind):
            model.is_flux_control = True
            model.save(update_fields=["is_flux_control"])


class Migration(migrations.Migration):
    dependencies = [
        ("generation", "0025_diffusionmodel_is_flux_fill"),
    ]

    operations = [
        migrations.AddField(
            model_name="diffusionmodel",
            name="is_flux_control",
            field=models.BooleanField(
                default=False, editable=False, verbose_name="FLUX.1 Depth / Canny"
            ),
        ),
        migrations.RunPython(mark_flux_control_models, migrations.RunPython.noop),
    ]
