from django.urls import path

from generation.styles import views as style_views

urlpatterns = [
    path("teams/<int:team_id>/styles/", style_views.team_styles, name="team_styles"),
    path("styles/<int:style_id>/edit/", style_views.style_edit, name="style_edit"),
    path("styles/<int:style_id>/delete/", style_views.style_delete, name="style_delete"),
]
