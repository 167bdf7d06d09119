from django.urls import path

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
    path(
        "images/<int:image_id>/thumbnail/<int:size>/",
        views.image_thumbnail,
        name="image_thumbnail",
    ),
]
