from django.contrib import admin

from studio.moderation.models import (
    AuditEntry,
    BlockedHash,
    Case,
    ImageScan,
    Moderator,
    Notification,
    Policy,
    PromptBlock,
    Removal,
    Report,
    Standing,
)

admin.site.register(Policy)
admin.site.register(Moderator)
admin.site.register(Case)
admin.site.register(Standing)
admin.site.register(Removal)
admin.site.register(Notification)


@admin.register(ImageScan)
class ImageScanAdmin(admin.ModelAdmin):
    list_display = ["image", "scanner", "decision", "top_label", "top_score", "scanned_at"]
    list_filter = ["decision"]


@admin.register(BlockedHash)
class BlockedHashAdmin(admin.ModelAdmin):
    list_display = ["pdq_hash", "source_image_id", "reason_code", "added_by", "created_at"]


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ["created_at", "reporter", "reason", "case"]


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
