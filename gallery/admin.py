from django.contrib import admin

from gallery.models import Image


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "created_by", "width", "height", "created_at"]
    list_select_related = ["project", "created_by"]
    raw_id_fields = ["project", "job", "created_by"]
