from django.urls import path

from generation import control_views, history_views, token_count_views, views

urlpatterns = [
    path("projects/<int:project_id>/", views.project_studio, name="project_studio"),
    path("projects/<int:project_id>/generate/", views.job_create, name="job_create"),
    path("projects/<int:project_id>/jobs/", views.project_jobs, name="project_jobs"),
    path(
        "projects/<int:project_id>/import-parameters/",
        views.parameters_import,
        name="parameters_import",
    ),
    path(
        "projects/<int:project_id>/control-preview/",
        control_views.control_preview,
        name="control_preview",
    ),
    path(
        "projects/<int:project_id>/token-count/",
        token_count_views.token_count_view,
        name="token_count",
    ),
    path("jobs/<int:job_id>/", views.job_status, name="job_detail"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job_cancel"),
    path("jobs/<int:job_id>/retry/", views.job_retry, name="job_retry"),
    path("jobs/<int:job_id>/priority/", views.job_priority, name="job_priority"),
    path("queue/", views.my_queue, name="my_queue"),
    path("history/", history_views.prompt_history_view, name="prompt_history"),
    path(
        "projects/<int:project_id>/history/",
        history_views.project_prompt_history,
        name="project_prompt_history",
    ),
    path(
        "jobs/<int:job_id>/favourite/",
        history_views.prompt_favourite_toggle,
        name="prompt_favourite",
    ),
]
