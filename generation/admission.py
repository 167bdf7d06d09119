"""The checks the apps above generation make before it takes work, registered from their
AppConfig.ready(): moderation screens what a job or a subject image holds, quotas check
limits and budgets. Generation runs them without importing those apps (the import layers,
docs/ARCHITECTURE.md). A check refuses by raising Refused, whose message says why; a form
check adds its errors to the form instead."""

from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied


class Refused(PermissionDenied):
    """Work an app above refused; nothing was made. `status_code`: 403, or 429 for a limit
    that frees up by waiting; `field`: the form field it names (a blocked prompt), or None."""

    status_code = 403
    field: str | None = None


Check = Callable[..., None]

# GenerationForm.clean: check(form, values) adds its errors to the form.
form_checks: list[Check] = []
# Before a job is made: check(user=, project=, prompt=, negative_prompt=).
prompt_checks: list[Check] = []
# Before jobs are saved: check(user=, project=, job=, copies=), `job` unsaved.
job_cost_checks: list[Check] = []
# Before a training run is saved: check(user=, project=, estimate=).
training_cost_checks: list[Check] = []
# Before a subject image is stored: check(user=, team=, picture=, what=).
subject_image_checks: list[Check] = []


def register(checks: list[Check], check: Check) -> None:
    if check not in checks:
        checks.append(check)


def run(checks: list[Check], *args: Any, **context: Any) -> None:
    for check in checks:
        check(*args, **context)
