from django import forms

from generation.recipe import MAX_PROMPT
from generation.styles.models import MAX_NAME, PROMPT_PLACEHOLDER, Style


class StyleForm(forms.ModelForm):
    class Meta:
        model = Style
        fields = ["name", "prompt", "negative_prompt"]
        help_texts = {
            "name": "How the studio's style picker lists it.",
            "prompt": f"Added after the prompt, after a comma; or write <code>"
                      f"{PROMPT_PLACEHOLDER}</code> where the prompt goes (e.g. <code>analog "
                      "photo of {prompt}, film grain</code>).",
            "negative_prompt": f"Added to the negative prompt the same way (<code>"
                               f"{PROMPT_PLACEHOLDER}</code> is the negative prompt as typed).",
        }
        widgets = {
            "prompt": forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
            "negative_prompt": forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        }
        error_messages = {
            "name": {
                "required": "Name the style: the studio's style picker lists it by name.",
                "max_length": f"At most {MAX_NAME} characters.",
            },
            "prompt": {"max_length": f"At most {MAX_PROMPT:,} characters."},
            "negative_prompt": {"max_length": f"At most {MAX_PROMPT:,} characters."},
        }

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.team = team

    def clean_name(self):
        name = " ".join(self.cleaned_data["name"].split())
        taken = Style.objects.filter(team=self.instance.team, name__iexact=name)
        if taken.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(
                f"The team has a style called {name} already: edit that one, or choose "
                "another name."
            )
        return name

    def clean(self):
        cleaned = super().clean()
        if not self.errors and not (cleaned.get("prompt") or cleaned.get("negative_prompt")):
            self.add_error("prompt", "Write the style's prompt, its negative prompt, or both.")
        return cleaned
