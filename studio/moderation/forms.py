from django import forms

from studio.moderation.models import CaseKind, Policy
from studio.moderation.services import BAN_DAYS, REASON_CODES


class PolicyForm(forms.ModelForm):
    class Meta:
        model = Policy
        fields = ["blocked_terms", "regexes", "allowed_terms"]
        widgets = {
            name: forms.Textarea(attrs={"rows": 6, "spellcheck": "false"})
            for name in ["blocked_terms", "regexes", "allowed_terms"]
        }


class PolicyTestForm(forms.Form):
    sample = forms.CharField(
        label="Sample prompt", max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )
    sample_negative = forms.CharField(
        label="Sample negative prompt", max_length=2000, required=False,
        widget=forms.Textarea(attrs={"rows": 1}),
    )


class CaseActionForm(forms.Form):
    action = forms.ChoiceField(
        choices=[("approve", "Approve"), ("dismiss", "Dismiss"), ("warn", "Warn user"),
                 ("ban", "Suspend user"), ("escalate", "Escalate")]
    )
    reason_code = forms.ChoiceField(label="Reason", choices=REASON_CODES)
    note = forms.CharField(
        max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    days = forms.TypedChoiceField(
        label="Suspend for", choices=BAN_DAYS, coerce=int, required=False, initial=7
    )


class CaseFilterForm(forms.Form):
    kind = forms.ChoiceField(choices=[("", "All reasons"), *CaseKind.choices], required=False)
    status = forms.ChoiceField(
        choices=[("open", "Open"), ("escalated", "Escalated"), ("resolved", "Resolved"),
                 ("all", "All")],
        required=False,
    )
    team = forms.IntegerField(required=False, widget=forms.HiddenInput)
