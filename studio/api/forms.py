from django import forms

from studio.accounts.models import Project, Role, Team

EXPIRY_CHOICES = [(7, "7 days"), (30, "30 days"), (90, "90 days"), (365, "A year")]


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=80, help_text="What it is for, e.g. “CI pipeline” or “Figma plugin”."
    )
    team = forms.ModelChoiceField(queryset=Team.objects.none(), empty_label=None)
    projects = forms.ModelMultipleChoiceField(
        queryset=Project.objects.none(),
        required=False,
        help_text="None picked: every project of the team.",
    )
    role = forms.ChoiceField(
        choices=Role.choices,
        initial=Role.EDITOR,
        help_text="What the token may do; never more than your own role in the team.",
    )
    days = forms.TypedChoiceField(
        label="Expires after", choices=EXPIRY_CHOICES, coerce=int, initial=90
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = Team.objects.for_user(user).distinct()
        self.fields["projects"].queryset = (
            Project.objects.for_user(user).select_related("team").order_by("team__name", "name")
        )
        self.fields["projects"].label_from_instance = lambda project: (
            f"{project.team.name} / {project.name}"
        )
