from django.db import migrations, models


def read_flux_transformers(apps, schema_editor):
    """FLUX.1 checkpoints registered before are read as the library reads a new one."""
    from generation.library.sources import flux_transformer

    DiffusionModel = apps.get_model("generation", "DiffusionModel")
    for model in DiffusionModel.objects.filter(kind="checkpoint", family="flux1"):
        model.flux_transformer = flux_transformer(model.source, source_kind=model.source_kind)
        if model.flux_transformer:
            model.save(update_fields=["flux_transformer"])


class Migration(migrations.Migration):
    dependencies = [
        ("generation", "0024_training_fp8_base"),
    ]

    operations = [
        migrations.AddField(
            model_name="diffusionmodel",
            name="flux_transformer",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "Standard"),
                    ("fill", "FLUX.1 Fill (inpaints and outpaints)"),
                    ("control", "FLUX.1 Depth / Canny (follows a control image)"),
                ],
                default="",
                editable=False,
                max_length=10,
                verbose_name="FLUX.1 transformer",
            ),
        ),
        migrations.RunPython(read_flux_transformers, migrations.RunPython.noop),
    ]
