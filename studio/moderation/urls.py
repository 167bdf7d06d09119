from django.urls import path

from studio.moderation import user_views, views

urlpatterns = [
    path("moderation/", views.case_queue, name="moderation_queue"),
    path("moderation/appeals/", views.case_queue, {"appeals": True}, name="moderation_appeals"),
    path("moderation/cases/<int:case_id>/act/", views.case_act, name="moderation_case_act"),
    path("moderation/cases/<int:case_id>/image/", views.case_image, name="moderation_case_image"),
    path("moderation/cases/bulk/", views.case_bulk, name="moderation_case_bulk"),
    path("moderation/suspensions/", views.suspensions, name="moderation_suspensions"),
    path("moderation/audit/", views.audit_log, name="moderation_audit"),
    path("moderation/policy/", views.site_policy, name="moderation_site_policy"),
    path("teams/<int:team_id>/policy/", views.team_policy, name="team_policy"),
    path("report/<str:kind>/<int:pk>/", user_views.report, name="moderation_report"),
    path("removals/<int:pk>/", user_views.removal_detail, name="moderation_removal"),
    path("notifications/", user_views.notifications, name="notifications"),
]
