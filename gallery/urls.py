from django.urls import path

from gallery import views

urlpatterns = [
    path("images/<int:image_id>/", views.image_detail, name="image_detail"),
    path("images/<int:image_id>/card/", views.image_card, name="image_card"),
    path("images/<int:image_id>/file/", views.image_file, name="image_file"),
    path(
        "images/<int:image_id>/thumbnail/<int:size>/",
        views.image_thumbnail,
        name="image_thumbnail",
    ),
]
