from django.urls import path

from generation.training import views as training_views
from generation.training.subjects import views as subject_views

urlpatterns = [
    path("teams/<int:team_id>/subjects/", subject_views.team_subjects, name="team_subjects"),
    path("teams/<int:team_id>/subjects/new/", subject_views.subject_new, name="subject_new"),
    path("subjects/<int:subject_id>/", subject_views.subject_detail, name="subject_detail"),
    path("subjects/<int:subject_id>/delete/", subject_views.subject_remove, name="subject_delete"),
    path(
        "subjects/<int:subject_id>/images/",
        subject_views.subject_images_upload,
        name="subject_images_upload",
    ),
    path(
        "subjects/<int:subject_id>/consent/", subject_views.subject_consent, name="subject_consent"
    ),
    path(
        "subjects/<int:subject_id>/consent/revoke/",
        subject_views.subject_consent_revoke,
        name="subject_consent_revoke",
    ),
    path(
        "subject-images/<int:image_id>/<str:variant>.img",
        subject_views.subject_image_file,
        name="subject_image_file",
    ),
    path(
        "subject-images/<int:image_id>/edit/",
        subject_views.subject_image_update,
        name="subject_image_update",
    ),
    path(
        "subject-images/<int:image_id>/delete/",
        subject_views.subject_image_remove,
        name="subject_image_delete",
    ),
    path("subjects/<int:subject_id>/train/", training_views.training_start, name="training_start"),
    path(
        "subjects/<int:subject_id>/train/estimate/",
        training_views.training_estimate_view,
        name="training_estimate",
    ),
    path("training/<int:run_id>/", training_views.training_detail, name="training_detail"),
    path("training/<int:run_id>/cancel/", training_views.training_cancel, name="training_cancel"),
    path(
        "training-samples/<int:sample_id>.png",
        training_views.training_sample_file,
        name="training_sample_file",
    ),
]
