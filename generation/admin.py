from django.contrib import admin

from generation.library.forms import DiffusionModelForm
from generation.library.hashes import model_hash_schedule
from generation.models import DiffusionModel, GenerationJob, TeamModelSetting


@admin.register(DiffusionModel)
class DiffusionModelAdmin(admin.ModelAdmin):
    form = DiffusionModelForm  # the library's checks: sources, duplicates, defaults
    list_display = ["name", "kind", "family", "source_kind", "source", "min_role", "is_enabled"]
    list_filter = ["kind", "family", "source_kind", "min_role", "is_enabled"]
    search_fields = ["name", "source"]
    readonly_fields = ["sha256"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        model_hash_schedule(model=obj)  # the form, saved uncommitted here, can't


@admin.register(TeamModelSetting)
class TeamModelSettingAdmin(admin.ModelAdmin):
    list_display = ["model", "team", "is_enabled", "min_role", "updated_by", "updated_at"]
    list_filter = ["is_enabled", "min_role"]
    list_select_related = ["model", "team", "updated_by"]
    raw_id_fields = ["team", "model", "updated_by"]


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "created_by", "status", "steps", "created_at"]
    list_filter = ["status"]
    list_select_related = ["project", "created_by"]
    raw_id_fields = ["project", "created_by"]
