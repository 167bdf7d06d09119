from django.contrib import admin

from generation.models import DiffusionModel, GenerationJob


@admin.register(DiffusionModel)
class DiffusionModelAdmin(admin.ModelAdmin):
    list_display = ["name", "family", "source", "is_enabled"]
    list_filter = ["family", "is_enabled"]
    search_fields = ["name", "source"]


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "created_by", "status", "steps", "created_at"]
    list_filter = ["status"]
    list_select_related = ["project", "created_by"]
    raw_id_fields = ["project", "created_by"]
