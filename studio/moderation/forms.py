from django import forms

from studio.moderation.models import CaseKind, Policy, ReportReason
from studio.moderation.services import BAN_DAYS, REASON_CODES


class PolicyForm(forms.ModelForm):
    class Meta:
        model = Policy
        fields = ["blocked_terms", "regexes", "allowed_terms", "scan_flag_at", "scan_block_at"]
        widgets = {
            **{
                name: forms.Textarea(attrs={"rows": 6, "spellcheck": "false"})
                for name in ["blocked_terms", "regexes", "allowed_terms"]
            },
            "scan_flag_at": forms.NumberInput(attrs={"step": "0.01", "min": "0.01", "max": "1"}),
            "scan_block_at": forms.NumberInput(attrs={"step": "0.01", "min": "0.01", "max": "1"}),
        }


class SitePolicyForm(PolicyForm):
    """The site policy: a team's lists and thresholds, and whether publishing needs a
    moderator's approval (site-wide only: public is site-wide)."""

    class Meta(PolicyForm.Meta):
        fields = [*PolicyForm.Meta.fields, "publishing_needs_approval"]


class PolicyTestForm(forms.Form):
    sample = forms.CharField(
        label="Sample prompt", max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )
    sample_negative = forms.CharField(
        label="Sample negative prompt", max_length=2000, required=False,
        widget=forms.Textarea(attrs={"rows": 1}),
    )


ACTION_CHOICES = [
    ("approve", "Approve"), ("remove", "Remove"), ("dismiss", "Dismiss"),
    ("warn", "Warn user"), ("ban", "Suspend user"), ("escalate", "Escalate"),
    ("uphold", "Uphold appeal"), ("deny", "Deny appeal"),
]


class CaseActionForm(forms.Form):
    action = forms.ChoiceField(choices=ACTION_CHOICES)
    reason_code = forms.ChoiceField(label="Reason", choices=REASON_CODES)
    note = forms.CharField(
        max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    # Missing: None, so the views' default (7 days) applies; never "", which reads as 0
    # (until lifted).
    days = forms.TypedChoiceField(
        label="Suspend for", choices=BAN_DAYS, coerce=int, required=False, initial=7,
        empty_value=None,
    )


# What the bulk bar offers: no warnings or suspensions of many users at once.
BULK_ACTIONS = ("approve", "remove", "dismiss", "escalate", "uphold", "deny")


class BulkActionForm(CaseActionForm):
    cases = forms.TypedMultipleChoiceField(coerce=int, choices=(), error_messages={
        "required": "Select at least one case.",
    })

    def __init__(self, *args, case_ids=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["cases"].choices = [(pk, pk) for pk in case_ids]
        self.fields["action"].choices = [
            (value, label) for value, label in ACTION_CHOICES if value in BULK_ACTIONS
        ]


class CaseFilterForm(forms.Form):
    kind = forms.ChoiceField(choices=[("", "All reasons"), *CaseKind.choices], required=False)
    status = forms.ChoiceField(
        choices=[("open", "Open"), ("escalated", "Escalated"), ("resolved", "Resolved"),
                 ("all", "All")],
        required=False,
    )
    team = forms.IntegerField(required=False, widget=forms.HiddenInput)


class ReportForm(forms.Form):
    reason = forms.ChoiceField(choices=ReportReason.choices, widget=forms.RadioSelect)
    note = forms.CharField(
        max_length=2000, required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "What is wrong, and where?"}),
    )


class AppealForm(forms.Form):
    note = forms.CharField(
        label="Why should it come back?", max_length=2000,
        widget=forms.Textarea(attrs={"rows": 4}),
        error_messages={"required": "Say why the removal was a mistake."},
    )
