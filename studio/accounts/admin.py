from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from studio.accounts.models import Invitation, Membership, Project, Team, User

admin.site.register(User, UserAdmin)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "created_at"]
    list_select_related = ["team"]
    search_fields = ["name", "team__name"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["team", "email", "role", "created_at", "accepted_at"]
