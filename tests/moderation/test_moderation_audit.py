"""The audit log is append-only: entries can't be changed or deleted, one by one or in bulk."""

from studio.moderation.models import AppendOnly, AuditEntry
from studio.moderation.services import audit
from tests.base import StudioTestCase


class AuditLogTests(StudioTestCase):
    def test_entries_cannot_be_changed_or_deleted(self):
        entry = audit(
            actor=self.owner, action="case.dismiss", target="case:1", before={"a": 1}, after={}
        )
        entry.note = "rewritten"
        with self.assertRaises(AppendOnly):
            entry.save()
        with self.assertRaises(AppendOnly):
            entry.delete()
        with self.assertRaises(AppendOnly):
            AuditEntry.objects.filter(pk=entry.pk).update(note="rewritten")
        with self.assertRaises(AppendOnly):
            AuditEntry.objects.all().delete()
        entry = AuditEntry.objects.get()
        self.assertEqual((entry.note, entry.before), ("", {"a": 1}))
