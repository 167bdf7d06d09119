from django.urls import path

from generation.library import views as library_views

urlpatterns = [
    path("models/", library_views.model_library, name="model_library"),
    path("models/new/", library_views.model_create, name="model_create"),
    path("models/<int:model_id>/edit/", library_views.model_edit, name="model_edit"),
    path("teams/<int:team_id>/models/", library_views.team_models, name="team_models"),
    path(
        "teams/<int:team_id>/models/<int:model_id>/",
        library_views.team_model_setting,
        name="team_model_setting",
    ),
]
