from django import forms
from django.conf import settings

from studio.quotas.models import USER_LIMITS, TeamBudget, TeamLimits


class TeamLimitsForm(forms.ModelForm):
    """A team's per-user limits: each blank (the site's) or at most the site's."""

    class Meta:
        model = TeamLimits
        fields = list(USER_LIMITS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, setting in USER_LIMITS.items():
            field = self.fields[name]
            field.site_value = getattr(settings, setting)
            field.widget.attrs.update(min=0, max=field.site_value, placeholder=field.site_value)
            field.help_text = f"Blank: the site's {field.site_value}. At most {field.site_value}."

    def clean(self):
        cleaned = super().clean()
        for name in USER_LIMITS:
            value, site = cleaned.get(name), self.fields[name].site_value
            if value is not None and value > site:
                label = self.fields[name].label
                self.add_error(name, f"{label.capitalize()}: at most {site}, the site's limit.")
        return cleaned


class TeamBudgetForm(forms.ModelForm):
    class Meta:
        model = TeamBudget
        fields = ["monthly_gpu_seconds", "daily_gpu_seconds"]

    def clean(self):
        cleaned = super().clean()
        monthly, daily = cleaned.get("monthly_gpu_seconds"), cleaned.get("daily_gpu_seconds")
        if monthly is not None and daily is not None and daily > monthly:
            self.add_error(
                "daily_gpu_seconds",
                f"GPU-seconds per day ({daily:,}) can't exceed those per month ({monthly:,}).",
            )
        return cleaned
