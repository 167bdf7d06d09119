from django.db import migrations, models


def mark_flux_fill_models(apps, schema_editor):
    """FLUX.1 checkpoints registered before are read as the library reads a new one."""
    from generation.library.sources import is_flux_fill

    DiffusionModel = apps.get_model("generation", "DiffusionModel")
    flux_checkpoints = DiffusionModel.objects.filter(kind="checkpoint", family="flux1")
    for model in flux_checkpoints:
        if is_flux_fill(model.source, source_kind=model.source_kind):
            model.is_flux_fill = True
            model.save(update_fields=["is_flux_fill"])


class Migration(migrations.Migration):
    dependencies = [
        ("generation", "0024_training_fp8_base"),
    ]

    operations = [
        migrations.AddField(
            model_name="diffusionmodel",
            name="is_flux_fill",
            field=models.BooleanField(default=False, editable=False, verbose_name="FLUX.1 Fill"),
        ),
        migrations.RunPython(mark_flux_fill_models, migrations.RunPython.noop),
    ]
