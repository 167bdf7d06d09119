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


def style_text_taken_out(style_text, prompt):
    """(True, `prompt` without `style_text`) where `style_text` was merged into it last, as
    A1111's extract_style_text_from_prompt reads it: around {prompt}, or at the end after
    ", "; else (False, `prompt`)."""
    stripped_prompt, stripped_style = prompt.strip(), style_text.strip()
    if PROMPT_PLACEHOLDER in stripped_style:
        left, _, right = stripped_style.partition(PROMPT_PLACEHOLDER)
        if stripped_prompt.startswith(left) and stripped_prompt.endswith(right):
            return True, stripped_prompt[len(left):len(stripped_prompt) - len(right)]
    elif stripped_prompt.endswith(stripped_style):
        unstyled = stripped_prompt[:len(stripped_prompt) - len(stripped_style)]
        return True, unstyled.removesuffix(", ")
    return False, prompt


def styles_in_prompts(prompt, negative_prompt, styles):
    """(names, prompt, negative prompt): the styles (Style objects) whose text both prompts
    hold, in the order they were applied, and the prompts without it, as A1111 infers styles
    from a pasted infotext (extract_styles_from_prompt): the last style applied is taken
    out first, until none matches."""
    found = []
    candidates = [style for style in styles if style.prompt or style.negative_prompt]
    while True:
        for style in candidates:
            in_prompt, unstyled = style_text_taken_out(style.prompt, prompt)
            in_negative, unstyled_negative = style_text_taken_out(style.negative_prompt,
                                                                  negative_prompt)
            if in_prompt and in_negative:
                prompt, negative_prompt = unstyled, unstyled_negative
                candidates.remove(style)
                found.append(style.name)
                break
        else:
            return list(reversed(found)), prompt, negative_prompt
