from django.urls import path

from generation.loras.embeddings import views as embedding_views

urlpatterns = [
    path(
        "teams/<int:team_id>/embeddings/", embedding_views.team_embeddings, name="team_embeddings"
    ),
    path(
        "teams/<int:team_id>/embeddings/upload/",
        embedding_views.embedding_upload,
        name="embedding_upload",
    ),
    path(
        "embeddings/<int:embedding_id>/delete/",
        embedding_views.embedding_delete_view,
        name="embedding_delete",
    ),
]
