"""Collections (included by gallery/urls.py)."""

from django.urls import path

from gallery.collections import views as collection_views

urlpatterns = [
    path("teams/<int:team_id>/collections/", collection_views.team_collections,
         name="team_collections"),
    path("teams/<int:team_id>/collections/new/", collection_views.collection_new,
         name="collection_new"),
    path("projects/<int:project_id>/collections/", collection_views.project_collections,
         name="project_collections"),
    path("collections/add/", collection_views.collection_add, name="collection_add"),
    path("collections/<int:collection_id>/", collection_views.collection_detail,
         name="collection_detail"),
    path("collections/<int:collection_id>/edit/", collection_views.collection_edit,
         name="collection_edit"),
    path("collections/<int:collection_id>/delete/", collection_views.collection_remove,
         name="collection_delete"),
    path("collections/<int:collection_id>/restore/", collection_views.collection_undo,
         name="collection_undo"),
    path("collections/<int:collection_id>/cover/", collection_views.collection_cover,
         name="collection_cover"),
    path("collections/<int:collection_id>/contributors/",
         collection_views.collection_contributor, name="collection_contributor"),
    path("collections/<int:collection_id>/images/<int:image_id>/remove/",
         collection_views.collection_image_remove, name="collection_image_remove"),
    path("collections/<int:collection_id>/images/<int:image_id>/move/",
         collection_views.collection_image_move, name="collection_image_move"),
    path("collections/<int:collection_id>/images/<int:image_id>/place/",
         collection_views.collection_image_place, name="collection_image_place"),
    # Secret links: anyone who has one opens the collection while it is shared by link.
    path("c/<str:token>/", collection_views.collection_shared, name="collection_shared"),
]
