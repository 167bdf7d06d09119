from django.urls import path

from studio.moderation import views

urlpatterns = [
    path("moderation/", views.case_queue, name="moderation_queue"),
    path("moderation/cases/<int:case_id>/act/", views.case_act, name="moderation_case_act"),
    path("moderation/suspensions/", views.suspensions, name="moderation_suspensions"),
    path("moderation/audit/", views.audit_log, name="moderation_audit"),
    path("moderation/policy/", views.site_policy, name="moderation_site_policy"),
    path("teams/<int:team_id>/policy/", views.team_policy, name="team_policy"),
]
