from django.urls import path

from gallery.reactions import views as reaction_views

urlpatterns = [
    path("images/<int:image_id>/like/", reaction_views.image_like, name="image_like"),
    path(
        "images/<int:image_id>/favourite/", reaction_views.image_favourite,
        name="image_favourite",
    ),
]
