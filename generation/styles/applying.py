"""Applying styles to a prompt exactly as A1111 does (modules/styles.py: merge_prompts and
apply_styles_to_prompt), for the prompt and the negative prompt alike."""

from generation.styles.models import PROMPT_PLACEHOLDER, Style


def merge_prompts(style_text, prompt):
    """The style's text with {prompt} replaced by `prompt`; without {prompt}, the two
    (trimmed, the empty one left out) joined by ", "."""
    if PROMPT_PLACEHOLDER in style_text:
        return style_text.replace(PROMPT_PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


def styled(prompt, style_texts):
    """`prompt` with each style's text merged in, in the order given."""
    for style_text in style_texts:
        prompt = merge_prompts(style_text, prompt)
    return prompt


def team_styles(team):
    """{name: Style} of the team's styles."""
    return {style.name: style for style in Style.objects.filter(team=team)}


def styled_prompts(prompt, negative_prompt, styles):
    """(prompt, negative prompt) with `styles` (Style objects, in order) applied."""
    return (
        styled(prompt, [style.prompt for style in styles]),
        styled(negative_prompt, [style.negative_prompt for style in styles]),
    )
