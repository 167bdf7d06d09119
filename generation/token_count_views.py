"""The studio's live token counter: the generate form posts a prompt box's text as it is
typed (debounced), with the model, steps and styles picked; the answer is A1111's "42/75",
or for FLUX.1 and SD 3.x T5's count against the family's limit ("42/512")."""

from django import forms
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_POST

from generation.forms import GenerationForm, LibraryModelField
from generation.loras.embeddings.models import EMBEDDING_NAME_RE, Embedding
from generation.models import DiffusionModel, ModelFamily, SourceKind
from generation.recipe import LIMITS, MAX_PROMPT
from generation.styles.applying import styled, team_styles
from generation.token_counts import (
    T5_TOKENIZER_FOLDERS,
    t5_token_count,
    t5_token_limit_at,
    t5_tokenizer_at,
    token_count,
    tokenizer_at,
)
from generation.views import project_for
from studio.throttling import token_count_rate_limited

PROMPT_FIELDS = {"prompt": "prompt", "negative_prompt": "negative prompt"}


class TokenCountForm(forms.Form):
    field = forms.ChoiceField(choices=list(PROMPT_FIELDS.items()))
    prompt = forms.CharField(required=False, strip=False)
    negative_prompt = forms.CharField(required=False, strip=False)
    model = LibraryModelField(
        queryset=DiffusionModel.objects.none(),
        error_messages={"invalid_choice": "Unknown model: choose one from the list."},
    )
    steps = forms.IntegerField(
        required=False, min_value=LIMITS["steps"][0], max_value=LIMITS["steps"][1]
    )
    styles = forms.MultipleChoiceField(required=False)

    def __init__(self, *args, user, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].queryset = DiffusionModel.objects.available_to(user, project)
        self.team_styles = team_styles(project.team)
        self.fields["styles"].choices = [(name, name) for name in self.team_styles]

    def text(self):
        """The box's text with the picked styles applied, as the job will have it."""
        field = self.cleaned_data["field"]
        style_texts = [getattr(self.team_styles[name], field)
                       for name in self.cleaned_data["styles"]]
        return styled(self.cleaned_data[field], style_texts)


UNAVAILABLE = "token count unavailable"
# A one-token word of CLIP's vocabulary: a textual-inversion embedding's name is counted as
# one of these per vector, as the worker loads it as that many tokens. (The worker also keeps
# an embedding's vectors in one chunk; the count can differ by that where one straddles 75.)
VECTOR_STAND_IN = "a"


def embedding_vectors_spelled_out(text, vectors):
    """`text` with each embedding's name (`vectors`: name → its vectors) as that many words."""
    def spelled(match):
        name = match.group()
        return " ".join([VECTOR_STAND_IN] * vectors[name]) if name in vectors else name

    return EMBEDDING_NAME_RE.sub(spelled, text)


@login_required
@require_POST
@token_count_rate_limited
def token_count_view(request, project_id):
    """A fragment: the count, or why there is none (422 for a field's error)."""
    project = project_for(request.user, project_id, "generate")
    form = TokenCountForm(request.POST, user=request.user, project=project)
    if not form.is_valid():
        label = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items())
        return counter(request, label, is_error=True, status=422)
    text = form.text()
    if len(text) > MAX_PROMPT:
        return counter(request, f"{len(text):,} characters: at most {MAX_PROMPT:,}",
                       is_error=True)
    model = form.cleaned_data["model"]
    # A single file's tokenizer is its diffusers config's (none given: none to read).
    is_file = model.source_kind == SourceKind.FILE
    location = model.config_source if is_file else model.source
    if model.family in T5_TOKENIZER_FOLDERS:
        return t5_counter(request, model, location, form.cleaned_data["field"], text)
    tokenizer = tokenizer_at(location)
    if tokenizer is None:
        return counter(request, UNAVAILABLE,
                       title=f"The web server can't read {model.name}'s tokenizer files.")
    # Prompt editing switches at a fraction of the steps: the form's default when blank.
    steps = form.cleaned_data["steps"] or GenerationForm.base_fields["steps"].initial
    # The team's embeddings the worker would load for this model (generation.loras.embeddings).
    embeddings = Embedding.objects.for_team(project.team).filter(family=model.family)
    vectors = {embedding.name: embedding.vectors for embedding in embeddings.named_in(text)}
    count = token_count(embedding_vectors_spelled_out(text, vectors), tokenizer, steps=steps)
    if count is None:
        return counter(request, UNAVAILABLE, title="Its prompt editing is too complex to read.")
    return counter(request, str(count), title="Tokens as AUTOMATIC1111 counts them: 75 for "
                   "each full chunk plus those of the chunk being typed, over the chunks' room.")


def t5_counter(request, model, location, field, text):
    """FLUX.1's and SD 3.x's count: T5's tokens over the family's limit ("42/512"), past
    it an error, as the worker refuses such a prompt rather than cut it."""
    family = model.get_family_display()
    if field == "negative_prompt" and model.family == ModelFamily.FLUX1:
        return counter(request, "not read by FLUX.1",
                       title="FLUX.1 models run without a negative prompt.")
    tokenizer = t5_tokenizer_at(location, model.family)
    limit = t5_token_limit_at(location, model.family)
    if tokenizer is None or limit is None:
        return counter(request, UNAVAILABLE,
                       title=f"The web server can't read {model.name}'s T5 tokenizer files "
                             "or transformer config.")
    count = t5_token_count(text, tokenizer, limit=limit)
    if count.too_many:
        return counter(request, str(count), is_error=True,
                       title=f"{family} models read at most {limit} T5 tokens: shorten the "
                             "prompt (it is refused, never cut short).")
    return counter(request, str(count), title=f"T5 tokens, its end token counted: {family} "
                   f"models read up to {limit}.")


def counter(request, label, *, title="", is_error=False, status=200):
    context = {"label": label, "title": title, "is_error": is_error}
    return render(request, "generation/token_count.html", context, status=status)
