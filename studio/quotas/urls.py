from django.urls import path

from studio.quotas import views

urlpatterns = [
    path("teams/<int:team_id>/usage/", views.team_usage_view, name="team_usage"),
    path("teams/<int:team_id>/limits/", views.team_limits_view, name="team_limits"),
    path(
        "teams/<int:team_id>/members/<int:membership_id>/cancel-jobs/",
        views.member_jobs_cancel,
        name="member_jobs_cancel",
    ),
    path("usage/", views.site_usage_view, name="site_usage"),
    path("usage/teams/<int:team_id>/budget/", views.team_budget_update, name="team_budget"),
    path("queue/cancel-all/", views.my_queue_cancel_all, name="my_queue_cancel_all"),
]
