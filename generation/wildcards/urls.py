from django.urls import path

from generation.wildcards import views as wildcard_views

urlpatterns = [
    path("teams/<int:team_id>/wildcards/", wildcard_views.team_wildcards, name="team_wildcards"),
    path("wildcards/<int:wildcard_id>/edit/", wildcard_views.wildcard_edit, name="wildcard_edit"),
    path(
        "wildcards/<int:wildcard_id>/delete/",
        wildcard_views.wildcard_delete,
        name="wildcard_delete",
    ),
]
