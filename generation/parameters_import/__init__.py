"""Read generation parameters back out of an image, for the studio form.

The sources, tried in this order:

- images made by this studio: the `studio` JSON chunk (the full spec, see
  gallery/services.py), completed by its A1111 `parameters` text;
- AUTOMATIC1111 (and Forge, SD.Next, and others writing its format): the `parameters`
  text chunk of a PNG, or the EXIF UserComment of a JPEG or WebP;
  Civitai's `Hashes` and `Civitai resources` in that text pick the library's files;
- Fooocus: its own JSON scheme in the same `parameters` chunk (or EXIF UserComment);
- ComfyUI: the `prompt` chunk, its API-format graph (node id -> {class_type, inputs}), or
  where a PNG has none its `workflow` chunk, the editor's UI-format graph, converted to the
  API format as ComfyUI's frontend does (`comfyui_workflow.py`); a workflow .json (either
  format) imports too;
- InvokeAI: the `invokeai_metadata` chunk; NovelAI: the `Software` and `Comment` chunks.

Values come back as GenerationForm field values; the form stays their one validator
(ranges, multiples of 8, the model the user may use). What a source holds that the form
cannot apply is listed in `not_applied`, never dropped silently. Input that cannot be read
(not an allowed image, corrupt, too big, no parameters, malformed metadata) raises
ParameterImportError with a message for the user.
"""

from .a1111 import parse_a1111_infotext
from .comfyui import parse_comfyui_prompt
from .comfyui_workflow import parse_comfyui_json, parse_comfyui_workflow, workflow_to_prompt
from .common import ImportedParameters, ParameterImportError, display_name, shorten
from .files import read_png_parameters
from .library import lora_hashes_match, match_model, model_hash_note
from .studio import parse_studio_metadata, parse_studio_spec

__all__ = [
    "ImportedParameters",
    "ParameterImportError",
    "display_name",
    "lora_hashes_match",
    "match_model",
    "model_hash_note",
    "parse_a1111_infotext",
    "parse_comfyui_json",
    "parse_comfyui_prompt",
    "parse_comfyui_workflow",
    "parse_studio_metadata",
    "parse_studio_spec",
    "read_png_parameters",
    "shorten",
    "workflow_to_prompt",
]
