from django.urls import path

from generation import views

urlpatterns = [
    path("projects/<int:project_id>/", views.project_studio, name="project_studio"),
    path("projects/<int:project_id>/generate/", views.job_create, name="job_create"),
    path("projects/<int:project_id>/jobs/", views.project_jobs, name="project_jobs"),
    path("jobs/<int:job_id>/", views.job_status, name="job_detail"),
]
