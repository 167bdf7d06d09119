from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from gallery.models import ReviewStatus
from generation.models import DiffusionModel, JobMode
from generation.prompt_history import MAX_QUERY_LENGTH, clean_query
from studio.accounts.models import Project

NEWEST, MOST_LIKED = "newest", "liked"
SORTS = [(NEWEST, "Newest"), (MOST_LIKED, "Most liked")]


class ListedChoiceField(forms.ModelChoiceField):
    """A choice among the rows a gallery lists, checked against that list (the query the
    menu runs, using the scope's indexes) rather than with queryset.get(pk=...): asked for
    one model among a team's images, PostgreSQL read the image table until it met one
    (make bench-gallery's team search)."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        listed = {str(row.pk): row for row in self.queryset}
        try:
            return listed[str(value)]
        except KeyError:
            raise ValidationError(
                self.error_messages["invalid_choice"], code="invalid_choice",
                params={"value": value},
            ) from None


class UserChoiceField(ListedChoiceField):
    def label_from_instance(self, obj):
        return obj.display_name()


class GalleryFilterForm(forms.Form):
    """A gallery's filters (GET). Choices are limited to what the gallery holds; a value
    outside them is an error on that field, and the other filters still apply."""

    q = forms.CharField(label="Search prompts", required=False, max_length=MAX_QUERY_LENGTH)
    model = ListedChoiceField(
        queryset=DiffusionModel.objects.none(), required=False, empty_label="Any model"
    )
    user = UserChoiceField(
        label="Made by", queryset=get_user_model().objects.none(), required=False,
        empty_label="Anyone",
    )
    project = ListedChoiceField(
        queryset=Project.objects.none(), required=False, empty_label="Any project"
    )
    mode = forms.ChoiceField(
        choices=[("", "Any mode"), *JobMode.choices], required=False
    )
    review = forms.ChoiceField(
        label="Review", choices=[("", "Any review state"), *ReviewStatus.choices], required=False
    )
    # The user's own favourites only (gallery.reactions.services; the views apply it).
    favourites = forms.BooleanField(label="Favourites", required=False)
    date_from = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    sort = forms.ChoiceField(label="Sort", choices=SORTS, required=False)

    def __init__(self, data, *, choices):
        super().__init__(data)
        self.fields["model"].queryset = choices["models"]
        for name, key in (("user", "users"), ("project", "projects")):
            if key in choices:
                self.fields[name].queryset = choices[key]
            else:
                del self.fields[name]
        self.fields["q"].widget.attrs.update(
            {"type": "search", "placeholder": "Search prompts…", "autocomplete": "off",
             "spellcheck": "false"}
        )

    def clean_q(self):
        return clean_query(self.cleaned_data["q"])

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return cleaned

    def filters(self):
        """The valid filters (and sort order), whatever else is wrong."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value}

    def sort_order(self):
        return self.filters().get("sort") or NEWEST

    def is_filtered(self):
        return bool(self.filters())
