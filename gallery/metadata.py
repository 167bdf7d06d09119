"""PNG metadata in the format AUTOMATIC1111 writes, so images carry their recipe."""

import json
import math

from PIL import PngImagePlugin


def a1111_quote(value):
    """Quote a value the way A1111 does: only when it holds a comma, colon or newline."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def format_number(value):
    return str(int(value)) if float(value).is_integer() else str(value)


def a1111_infotext(*, prompt, negative_prompt, fields):
    """`fields` is an ordered list of (name, value) pairs; None values are left out."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(
        ", ".join(f"{name}: {a1111_quote(value)}" for name, value in fields if value is not None)
    )
    return "\n".join(lines)


def finite_json_value(value):
    """`value` with every infinite or NaN float as the string JSON.parse would need
    ("-Infinity", "Infinity", "NaN"): DPM++ schedulers' configs hold -inf
    (lambda_min_clipped), which JSON has no number for."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: finite_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json_value(item) for item in value]
    return value


def strict_json(spec):
    """JSON any strict parser reads (RFC 8259: no Infinity or NaN)."""
    return json.dumps(finite_json_value(spec), sort_keys=True, allow_nan=False)


def png_info(*, parameters, spec):
    """PNG text chunks: A1111's `parameters` and our full JSON spec."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    info.add_text("studio", strict_json(spec))
    return info
