from django import forms
from django.db.models import Sum
from django.db.models.functions import Length

from generation.wildcards.expansion import LORA_TAG, WILDCARD_RE
from generation.wildcards.models import (
    MAX_NAME,
    MAX_TEAM_WILDCARD_CHARACTERS,
    MAX_VALUE_LENGTH,
    MAX_VALUES,
    MAX_WILDCARDS_PER_TEAM,
    WILDCARD_NAME_RE,
    Wildcard,
    value_lines,
)

# A picked fragment's variants are parsed when it is picked: few per fragment.
MAX_FRAGMENT_VARIANT_GROUPS = 10


class WildcardForm(forms.ModelForm):
    class Meta:
        model = Wildcard
        fields = ["name", "values"]
        help_texts = {
            "name": "A prompt calls it as __name__; words joined by / make folders "
                    "(__animals/cats__, or __animals/*__ for any of them).",
            "values": "One fragment per line; each job picks one. Lines starting with # are "
                      "comments. { } variants may be used; other wildcards and LoRA tags may not.",
        }
        widgets = {"values": forms.Textarea(attrs={"rows": 8, "spellcheck": "false"})}
        error_messages = {
            "name": {
                "required": "Name the wildcard: a prompt calls it as __name__.",
                "max_length": f"At most {MAX_NAME} characters.",
            },
            "values": {"required": "Write at least one fragment, one per line."},
        }

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.team = team

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not WILDCARD_NAME_RE.fullmatch(name):
            raise forms.ValidationError(
                "Use letters, digits, _ and -, with / between folder names (e.g. "
                "animals/cats)."
            )
        taken = Wildcard.objects.filter(team=self.instance.team, name__iexact=name)
        if taken.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(
                f"The team has a wildcard called {name} already: edit that one, or choose "
                "another name."
            )
        return name

    def clean_values(self):
        text = self.cleaned_data["values"]
        lines = value_lines(text)
        if not lines:
            raise forms.ValidationError("Write at least one fragment, one per line.")
        if len(lines) > MAX_VALUES:
            raise forms.ValidationError(f"At most {MAX_VALUES:,} fragments ({len(lines):,} given).")
        for number, line in enumerate(lines, start=1):
            if len(line) > MAX_VALUE_LENGTH:
                raise forms.ValidationError(
                    f"Fragment {number} has {len(line):,} characters; at most "
                    f"{MAX_VALUE_LENGTH} each."
                )
            # Wildcards inside wildcards could expand without end; LoRAs are checked on the
            # prompt as typed, so they can't come from a wildcard.
            if WILDCARD_RE.search(line):
                raise forms.ValidationError(
                    f"Fragment {number} names another wildcard ({line[:60]}): wildcards "
                    "can't use wildcards."
                )
            if line.count("{") > MAX_FRAGMENT_VARIANT_GROUPS:
                raise forms.ValidationError(
                    f"Fragment {number} has {line.count('{')} {{ }} groups; at most "
                    f"{MAX_FRAGMENT_VARIANT_GROUPS} each."
                )
            if LORA_TAG in line:
                raise forms.ValidationError(
                    f"Fragment {number} holds a LoRA tag: write <lora:…> in the prompt itself."
                )
        return "\n".join(line.strip() for line in text.strip().splitlines())

    def clean(self):
        cleaned = super().clean()
        others = Wildcard.objects.filter(team=self.instance.team).exclude(pk=self.instance.pk)
        if self.instance.pk is None and others.count() >= MAX_WILDCARDS_PER_TEAM:
            raise forms.ValidationError(
                f"The team has {MAX_WILDCARDS_PER_TEAM} wildcards, the most it may keep: "
                "delete or merge some first."
            )
        values = cleaned.get("values")
        if values is not None:
            used = others.aggregate(total=Sum(Length("values")))["total"] or 0
            if used + len(values) > MAX_TEAM_WILDCARD_CHARACTERS:
                self.add_error("values", (
                    f"The team's wildcards would hold {used + len(values):,} characters; at "
                    f"most {MAX_TEAM_WILDCARD_CHARACTERS:,} in all ({used:,} in the others)."
                ))
        return cleaned
