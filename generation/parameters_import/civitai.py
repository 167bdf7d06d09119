"""What Civitai adds to A1111's infotext (its generator's images, JPEGs with the text in
the EXIF UserComment): `Civitai resources`, the checkpoint and LoRAs by Civitai's names
and weights, and `Hashes`, their hashes ("model", "lora:<name>", "embed:<name>")."""

import json
import re

from .common import ParameterImportError, float_value, load_json, shorten

CIVITAI_KEYS = {"Civitai resources", "Hashes"}
# Written for Civitai's site (remix ids and the like): nothing to apply or warn about.
CIVITAI_INFORMATIONAL = {"Civitai metadata", "Created Date"}
LORA_TAG = re.compile(r"<lora:([^:>]+)", re.IGNORECASE)
# Civitai writes these as bare JSON, commas and colons unquoted, which A1111's field
# pattern would cut apart.
JSON_FIELD = re.compile(r"(?:^|,\s*)(Civitai resources|Civitai metadata|Hashes):\s*(?=[\[{])")


def civitai_json_fields(line):
    """(`line` without its bare JSON fields, [(key, JSON text)]); a value that is no
    valid JSON stays in the line, for the field pattern (and its error) to meet."""
    fields, kept, position = [], [], 0
    decoder = json.JSONDecoder()
    while match := JSON_FIELD.search(line, position):
        try:
            _, end = decoder.raw_decode(line, match.end())
        except (ValueError, RecursionError):
            break
        kept.append(line[position : match.start()])
        fields.append((match[1], line[match.end() : end]))
        position = end
    return "".join(kept) + line[position:], fields


def civitai_fields_apply(values, result):
    """Add the model and LoRAs of `Hashes` and `Civitai resources` (`values`: the
    infotext's unquoted fields) to `result` for the library lookup: hashes first (the same
    as A1111's own fields, which win), then names; a LoRA the prompt doesn't call is
    called with its resource's weight."""
    hashes = _json_value(values, "Hashes", dict)
    for key, value in hashes.items():
        if not isinstance(value, str):
            raise ParameterImportError(f"Hashes: the hash of {shorten(key)} is not text.")
        kind, _, name = key.partition(":")
        if key == "model":
            result.model_hash = result.model_hash or value.strip()
        elif kind == "lora" and name.strip():
            result.lora_hashes.setdefault(name.strip(), value.strip())
    called = {name.strip().lower() for name in LORA_TAG.findall(result.values.get("prompt", ""))}
    for resource in _json_value(values, "Civitai resources", list):
        if not isinstance(resource, dict) or not isinstance(resource.get("modelName"), str):
            raise ParameterImportError(
                f"Civitai resources: “{shorten(resource)}” is not a resource with a modelName."
            )
        name, kind = resource["modelName"].strip(), str(resource.get("type", "")).lower()
        if kind == "checkpoint":
            result.model_name = result.model_name or name
        elif kind == "lora" and name.lower() not in called:
            weight = float_value(resource.get("weight", 1), f"Civitai resource {shorten(name)}")
            if re.search(r"[<>:]", name):
                result.report("LoRA", f"{name} ({weight:g}; its name can't be written as "
                                      "<lora:name:weight>)")
                continue
            result.values["prompt"] = f"{result.values.get('prompt', '')} <lora:{name}:{weight:g}>"
            result.lora_hashes.setdefault(name, "")
            called.add(name.lower())


def _json_value(values, key, kind):
    if key not in values:
        return kind()
    value = load_json(values[key], f"{key} field")
    if not isinstance(value, kind):
        raise ParameterImportError(
            f"{key}: not a JSON {'object' if kind is dict else 'list'}."
        )
    return value
