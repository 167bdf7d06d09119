from django.contrib.auth import views as auth_views
from django.urls import path

from studio.accounts import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("signup/", views.signup, name="signup"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="accounts/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("teams/new/", views.team_create, name="team_create"),
    path("teams/<int:team_id>/", views.team_detail, name="team_detail"),
    path("teams/<int:team_id>/projects/new/", views.project_create, name="project_create"),
    path("teams/<int:team_id>/invitations/new/", views.invitation_create, name="invitation_create"),
    path(
        "teams/<int:team_id>/members/<int:membership_id>/",
        views.member_update,
        name="member_update",
    ),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
]
