from django import forms
from django.contrib.auth.forms import UserCreationForm

from studio.accounts.models import Invitation, Project, Role, Team, User


class SignupForm(UserCreationForm):
    email = forms.EmailField(required=False, help_text="Optional; used to match invitations.")

    class Meta:
        model = User
        fields = ["username", "email"]


class TeamForm(forms.ModelForm):
    class Meta:
        model = Team
        fields = ["name"]
        widgets = {
            "name": forms.TextInput(attrs={"placeholder": "e.g. Concept art", "autofocus": True})
        }


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ["name", "description"]
        widgets = {
            "name": forms.TextInput(
                attrs={"placeholder": "e.g. Spring campaign", "autofocus": True}
            ),
            "description": forms.TextInput(attrs={"placeholder": "What is this project for?"}),
        }


class InvitationForm(forms.ModelForm):
    # Owners are made by transfer, never by invitation.
    role = forms.ChoiceField(
        choices=[(r.value, r.label) for r in (Role.VIEWER, Role.EDITOR, Role.ADMIN)],
        initial=Role.EDITOR,
    )

    class Meta:
        model = Invitation
        fields = ["email", "role"]
        widgets = {"email": forms.EmailInput(attrs={"placeholder": "teammate@example.com"})}
        help_texts = {"email": "Optional. When set, only the user with this email can accept."}


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
