from django.urls import path

from gallery.review import views as review_views

urlpatterns = [
    path("images/<int:image_id>/review/", review_views.image_review, name="image_review"),
    path(
        "images/<int:image_id>/comments/",
        review_views.comment_create,
        name="image_comment_create",
    ),
    path(
        "comments/<int:comment_id>/delete/",
        review_views.comment_remove,
        name="image_comment_delete",
    ),
]
