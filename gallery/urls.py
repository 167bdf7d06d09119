from django.urls import include, path

from gallery import browse_views, views

urlpatterns = [
    path("images/", browse_views.my_images, name="my_images"),
    path(
        "projects/<int:project_id>/gallery/", browse_views.project_gallery, name="project_gallery"
    ),
    path("teams/<int:team_id>/gallery/", browse_views.team_gallery, name="team_gallery"),
    path("images/<int:image_id>/", views.image_detail, name="image_detail"),
    path("images/<int:image_id>/card/", views.image_card, name="image_card"),
    path("images/<int:image_id>/file/", views.image_file, name="image_file"),
    path("images/<int:image_id>/remix/", views.image_remix, name="image_remix"),
    path(
        "images/<int:image_id>/download/clean/",
        views.image_download_clean,
        name="image_download_clean",
    ),
    path("images/<int:image_id>/visibility/", views.image_visibility, name="image_visibility"),
    path("images/<int:image_id>/share-link/", views.image_share_reset, name="image_share_reset"),
    path(
        "images/<int:image_id>/share-recipe/", views.image_share_recipe, name="image_share_recipe"
    ),
    # Secret links: anyone who has one sees the image while it is shared by link.
    path("shared/<str:token>/", views.image_shared, name="image_shared"),
    path("shared/<str:token>/file/", views.image_shared_file, name="image_shared_file"),
    path(
        "shared/<str:token>/thumbnail/<int:size>/",
        views.image_shared_thumbnail,
        name="image_shared_thumbnail",
    ),
    path(
        "shared/<str:token>/download/clean/",
        views.image_shared_clean,
        name="image_shared_clean",
    ),
    path(
        "images/<int:image_id>/thumbnail/<int:size>/",
        views.image_thumbnail,
        name="image_thumbnail",
    ),
    path("", include("gallery.review.urls")),  # review state and comments
    path("", include("gallery.deletion.urls")),  # delete, undo, recently deleted
    path("", include("gallery.collections.urls")),
    path("", include("gallery.explore.urls")),
    path("", include("gallery.reactions.urls")),  # likes and favourites
]
