from django.urls import path

from gallery.deletion import views as deletion_views

urlpatterns = [
    path("images/<int:image_id>/delete/", deletion_views.image_delete, name="image_delete"),
    path(
        "jobs/<int:job_id>/images/delete/",
        deletion_views.job_images_delete,
        name="job_images_delete",
    ),
    path(
        "deletions/<uuid:deletion_id>/restore/",
        deletion_views.deletion_restore,
        name="deletion_restore",
    ),
    path(
        "projects/<int:project_id>/gallery/deleted/",
        deletion_views.recently_deleted,
        name="recently_deleted",
    ),
    path(
        "images/<int:image_id>/deleted/thumbnail/<int:size>/",
        deletion_views.deleted_image_thumbnail,
        name="deleted_image_thumbnail",
    ),
]
