"""Reports: any signed-in user reports an image, a LoRA or a user. Reports of one item
merge into one open case whose count says how many people reported it."""

from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from studio.moderation.models import Case, CaseKind, Report, ReportReason

RATE_WINDOW = timedelta(hours=1)


class ReportRefused(ValueError):
    """The report can't be taken; the message says why."""


def report_target(kind, subject):
    """The case fields that name what is reported, and the team whose moderators see it
    (a reported user goes to the site moderators)."""
    if kind == "image":
        return {"subject_image_id": subject.pk, "subject_user": subject.created_by,
                "team": subject.project.team}
    if kind == "lora":
        return {"subject_lora_id": subject.pk, "subject_user": subject.created_by,
                "team": subject.team}
    return {"subject_user": subject, "team": None}


def open_report_case(kind, target):
    cases = Case.objects.select_for_update().open().filter(kind=CaseKind.REPORT)
    if kind == "image":
        return cases.filter(subject_image_id=target["subject_image_id"]).first()
    if kind == "lora":
        return cases.filter(subject_lora_id=target["subject_lora_id"]).first()
    return cases.filter(
        subject_user=target["subject_user"], subject_image_id__isnull=True,
        subject_lora_id__isnull=True,
    ).first()


def report_summary(case):
    counts = Counter(case.reports.values_list("reason", flat=True))
    parts = ", ".join(
        f"{ReportReason(reason).label.lower()} ×{count}" for reason, count in counts.most_common()
    )
    return f"{case.count} report{'s' if case.count != 1 else ''}: {parts}."[:500]


def report_create(*, reporter, kind, subject, reason, note=""):
    """Take a report (the caller checked that the reporter may see `subject`): at most
    STUDIO_REPORTS_PER_HOUR per reporter, one per reporter per open case."""
    if reason not in ReportReason.values:
        raise ReportRefused("Choose a reason for the report.")
    if kind == "user" and subject.pk == reporter.pk:
        raise ReportRefused("You can't report yourself.")
    now = timezone.now()
    limit = settings.STUDIO_REPORTS_PER_HOUR
    with transaction.atomic():
        recent = Report.objects.filter(
            reporter=reporter, created_at__gte=now - RATE_WINDOW
        ).count()
        if recent >= limit:
            raise ReportRefused(
                f"You have sent {recent} reports in the last hour, the most we take; "
                "try again later."
            )
        target = report_target(kind, subject)
        case = open_report_case(kind, target)
        if case is not None and case.reports.filter(reporter=reporter).exists():
            raise ReportRefused("You reported this already; the moderators will look at it.")
        if case is None:
            case = Case.objects.create(
                kind=CaseKind.REPORT, count=1, created_at=now, updated_at=now, **target
            )
        else:
            case.count += 1
            case.updated_at = now
        report = Report.objects.create(
            reporter=reporter, case=case, reason=reason, note=note.strip()[:2000],
            created_at=now,
        )
        case.summary = report_summary(case)
        case.save(update_fields=["count", "updated_at", "summary"])
    return report
