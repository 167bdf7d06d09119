from django.urls import path

from studio.moderation.public_loras import views as public_lora_views

urlpatterns = [
    path("loras/public/", public_lora_views.public_loras, name="public_loras"),
    path(
        "loras/public/<int:lora_id>/",
        public_lora_views.public_lora_detail,
        name="public_lora_detail",
    ),
    path(
        "loras/public/<int:lora_id>/file/",
        public_lora_views.public_lora_file,
        name="public_lora_file",
    ),
    path("loras/<int:lora_id>/publish/", public_lora_views.lora_publish, name="lora_publish"),
    path(
        "loras/<int:lora_id>/unpublish/",
        public_lora_views.lora_unpublish_view,
        name="lora_unpublish",
    ),
]
