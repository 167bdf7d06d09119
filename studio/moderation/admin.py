from django.contrib import admin

from studio.moderation.models import AuditEntry, Case, Moderator, Policy, PromptBlock, Standing

admin.site.register(Policy)
admin.site.register(Moderator)
admin.site.register(Case)
admin.site.register(Standing)


@admin.register(PromptBlock)
class PromptBlockAdmin(admin.ModelAdmin):
    list_display = ["created_at", "user", "team", "field", "term"]


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only."""

    list_display = ["created_at", "actor", "action", "target", "reason_code"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False
