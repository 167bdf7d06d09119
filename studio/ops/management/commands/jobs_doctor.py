"""Report stuck or inconsistent jobs, training runs and images; exit 1 if any."""

import json

from django.core.management.base import BaseCommand, CommandError

from studio.ops.doctor import CHECKS, jobs_doctor_findings


def positive_number(value):
    """argparse says "argument --limit: invalid positive_number value: '0'" otherwise."""
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Report jobs and training runs that are stuck or inconsistent (lapsed leases, long "
        "queues, out of attempts, finished without images) and images missing thumbnails or "
        "a moderation scan. Only reports; exits 1 when it finds something."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--queued-minutes", type=positive_number, default=30,
            help="Queued longer than this counts as stuck (default 30).",
        )
        parser.add_argument(
            "--grace-minutes", type=positive_number, default=5,
            help="Time the sweeper and CPU workers get before a lapsed lease or a missing "
            "image, thumbnail or scan counts (default 5).",
        )
        parser.add_argument(
            "--limit", type=positive_number, default=100,
            help="List at most this many of each problem; counts are always complete.",
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Write JSON to stdout."
        )

    def handle(self, *args, queued_minutes, grace_minutes, limit, as_json, **options):
        counts, findings = jobs_doctor_findings(
            queued_minutes=queued_minutes, grace_minutes=grace_minutes, limit=limit
        )
        if as_json:
            self.write_json(counts, findings)
        else:
            self.write_text(counts, findings)
        if counts:
            raise CommandError(f"{sum(counts.values())} problem(s) found.", returncode=1)

    def write_json(self, counts, findings):
        self.stdout.write(
            json.dumps({"counts": counts, "findings": [item.as_dict() for item in findings]})
        )

    def write_text(self, counts, findings):
        if not counts:
            self.stdout.write(self.style.SUCCESS("No stuck or inconsistent jobs found."))
            return
        for check, count in counts.items():
            self.stdout.write(self.style.WARNING(f"{check} ({count}): {CHECKS[check]}"))
            for item in findings:
                if item.check == check:
                    self.stdout.write(f"  {item.kind} {item.id}: {item.detail}")
            listed = sum(item.check == check for item in findings)
            if listed < count:
                self.stdout.write(f"  ... and {count - listed} more")

