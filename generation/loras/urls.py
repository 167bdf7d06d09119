from django.urls import path

from generation.loras import views as lora_views

urlpatterns = [
    path("teams/<int:team_id>/loras/", lora_views.team_loras, name="team_loras"),
    path("teams/<int:team_id>/loras/upload/", lora_views.lora_upload, name="lora_upload"),
    path("loras/<int:lora_id>/", lora_views.lora_detail, name="lora_detail"),
    path("loras/<int:lora_id>/edit/", lora_views.lora_edit, name="lora_edit"),
    path("loras/<int:lora_id>/delete/", lora_views.lora_delete_view, name="lora_delete"),
    path("loras/<int:lora_id>/file/", lora_views.lora_file, name="lora_file"),
]
