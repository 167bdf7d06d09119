from django import forms

from gallery import publication
from gallery.collections.models import Collection, CollectionVisibility
from studio.accounts.models import Project


class CollectionForm(forms.ModelForm):
    """Name, description and visibility; on creation also where it lives (the team, or
    one of its projects)."""

    project = forms.ModelChoiceField(
        label="Belongs to", queryset=Project.objects.none(), required=False,
        empty_label="The whole team",
    )
    visibility = forms.ChoiceField(
        label="Who can see it", choices=CollectionVisibility.choices,
        initial=CollectionVisibility.PRIVATE,
        help_text="Private: you and its contributors. Project, team: their members. "
        "Link, public: anyone, who sees only the images that are public themselves.",
    )

    class Meta:
        model = Collection
        fields = ["name", "description", "visibility"]
        widgets = {"description": forms.TextInput()}
        help_texts = {"description": "Optional: what it gathers, for whoever opens it."}
        error_messages = {"name": {"required": "Give the collection a name."}}

    def __init__(self, *args, team=None, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        if team is None:  # editing: it stays where it is
            del self.fields["project"]
        else:
            self.fields["project"].queryset = team.projects.order_by("name")
        self.fields["name"].widget.attrs.update(
            {"placeholder": "Moodboard, finals, references…", "autocomplete": "off"}
        )

    def clean_name(self):
        return " ".join(self.cleaned_data["name"].split())

    def clean(self):
        cleaned = super().clean()
        project = cleaned.get("project") if "project" in self.fields else self.instance.project
        if cleaned.get("visibility") == CollectionVisibility.PROJECT and project is None:
            self.add_error(
                "visibility",
                "A team collection can't be limited to a project: choose team, or make "
                "it belong to a project.",
            )
        if self.publishing_refused(cleaned.get("visibility")):
            self.add_error("visibility", publication.gate.refusal(self.user))
        return cleaned

    def publishing_refused(self, visibility):
        """Making it public, by someone whom strikes keep from publishing."""
        if visibility != CollectionVisibility.PUBLIC or self.user is None:
            return False
        already_public = self.instance.pk and Collection.all_objects.filter(
            pk=self.instance.pk, visibility=CollectionVisibility.PUBLIC
        ).exists()
        return not already_public and publication.gate.refusal(self.user) is not None
