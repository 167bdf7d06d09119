"""ComfyUI's UI-format workflow (the `workflow` chunk, the .json its Save writes) as the
API-format graph the `prompt` chunk holds, for comfyui.py to read.

The UI graph lists nodes ({id, type, mode, inputs: [{name, type, link, widget?}],
widgets_values: [...]}) and links ([id, origin node, origin slot, target node, target
slot, type], or objects with those names in the 1.0 schema). The API graph is what the
frontend's graphToPrompt makes of it (Comfy-Org/ComfyUI_frontend: src/utils/executionUtil.ts,
ExecutableNodeDTO.resolveInput / resolveOutput): widget values by input name, links
resolved through Reroute nodes and bypassed nodes, muted and bypassed nodes left out (and
the inputs linked to a muted node with them), a PrimitiveNode's value written into the
widget it feeds, Notes dropped.
"""

from .comfyui import COMFY_SAMPLER_NODES, MAX_LINK_DEPTH, MAX_NODES, parse_comfyui_prompt
from .common import ImportedParameters, ParameterImportError, load_json, shorten

# The frontend's "control after generate" widget (fixed, increment, decrement, randomize),
# which follows a seed's INT widget in widgets_values but is no input of the node.
CONTROL = object()


def _widgets(*required, optional=()):
    return {"required": required, "optional": optional}


# The widget inputs of the nodes comfyui.py reads, in the order ComfyUI defines the node's
# inputs (required, then optional; inputs that take a link are no widget): nodes.py,
# comfy_extras/nodes_custom_sampler.py, nodes_flux.py, nodes_sd3.py, nodes_clip_sdxl.py,
# nodes_model_advanced.py, nodes_upscale_model.py and nodes_primitive.py. A trailing widget
# older ComfyUI versions lack (UNETLoader's weight_dtype, the CLIP loaders' type and device)
# is optional here: an older file is read without it.
NODE_WIDGETS = {
    "KSampler": _widgets("seed", CONTROL, "steps", "cfg", "sampler_name", "scheduler",
                         "denoise"),
    "KSamplerAdvanced": _widgets("add_noise", "noise_seed", CONTROL, "steps", "cfg",
                                 "sampler_name", "scheduler", "start_at_step", "end_at_step",
                                 "return_with_leftover_noise"),
    "SamplerCustomAdvanced": _widgets(),
    "RandomNoise": _widgets("noise_seed", CONTROL),
    "BasicGuider": _widgets(),
    "CFGGuider": _widgets("cfg"),
    "KSamplerSelect": _widgets("sampler_name"),
    "BasicScheduler": _widgets("scheduler", "steps", "denoise"),
    "CheckpointLoaderSimple": _widgets("ckpt_name"),
    "CheckpointLoader": _widgets("config_name", "ckpt_name"),
    "UNETLoader": _widgets("unet_name", optional=("weight_dtype",)),
    "CLIPTextEncode": _widgets("text"),
    "CLIPTextEncodeSDXL": _widgets("width", "height", "crop_w", "crop_h", "target_width",
                                   "target_height", "text_g", "text_l"),
    "CLIPTextEncodeFlux": _widgets("clip_l", "t5xxl", "guidance"),
    "CLIPTextEncodeSD3": _widgets("clip_l", "clip_g", "t5xxl", optional=("empty_padding",)),
    "CLIPSetLastLayer": _widgets("stop_at_clip_layer"),
    "LoraLoader": _widgets("lora_name", "strength_model", "strength_clip"),
    "LoraLoaderModelOnly": _widgets("lora_name", "strength_model"),
    "ModelSamplingFlux": _widgets("max_shift", "base_shift", "width", "height"),
    "ModelSamplingSD3": _widgets("shift"),
    "EmptyLatentImage": _widgets("width", "height", "batch_size"),
    "EmptySD3LatentImage": _widgets("width", "height", "batch_size"),
    "FluxGuidance": _widgets("guidance"),
    "DualCLIPLoader": _widgets("clip_name1", "clip_name2", optional=("type", "device")),
    "TripleCLIPLoader": _widgets("clip_name1", "clip_name2", "clip_name3"),
    "CLIPLoader": _widgets("clip_name", optional=("type", "device")),
    "VAELoader": _widgets("vae_name"),
    "LatentUpscale": _widgets("upscale_method", "width", "height", "crop"),
    "LatentUpscaleBy": _widgets("upscale_method", "scale_by"),
    "VAEDecode": _widgets(),
    "VAEDecodeTiled": _widgets(optional=("tile_size", "overlap", "temporal_size",
                                         "temporal_overlap")),
    "SaveImage": _widgets("filename_prefix"),
    "PreviewImage": _widgets(),
    "PrimitiveInt": _widgets("value", CONTROL),
    "PrimitiveFloat": _widgets("value"),
    "PrimitiveString": _widgets("value"),
    "PrimitiveStringMultiline": _widgets("value"),
    "PrimitiveBoolean": _widgets("value"),
}
# Frontend-only nodes: never sent to the server. A Reroute passes its input on; a
# PrimitiveNode's value is written into the widget it feeds; Notes hold text for people.
REROUTE_NODES = ("Reroute",)
PRIMITIVE_NODES = ("PrimitiveNode",)
NOTE_NODES = ("Note", "MarkdownNote")
# LiteGraph's node modes: 2 "never" (muted in ComfyUI), 4 bypassed.
MODE_MUTED = 2
MODE_BYPASSED = 4


def is_ui_workflow(data):
    """Whether parsed JSON is a UI-format workflow rather than an API-format graph."""
    return isinstance(data, dict) and isinstance(data.get("nodes"), list)


def parse_comfyui_workflow(workflow) -> ImportedParameters:
    """ComfyUI's UI-format workflow (the `workflow` chunk, or a saved .json): converted to
    the API-format graph, then read as a `prompt` chunk is."""
    if isinstance(workflow, (str, bytes)):
        workflow = load_json(workflow, "ComfyUI workflow")
    return parse_comfyui_prompt(workflow_to_prompt(workflow))


def parse_comfyui_json(text) -> ImportedParameters:
    """A ComfyUI .json file, in either format: the UI workflow (Save) or the API graph
    (Export (API))."""
    data = load_json(text, "ComfyUI file")
    if is_ui_workflow(data):
        return parse_comfyui_workflow(data)
    return parse_comfyui_prompt(data)


def workflow_to_prompt(workflow):
    """The API-format graph ({node id: {class_type, inputs}}) of a UI-format workflow, as
    ComfyUI's frontend queues it."""
    return _Workflow(workflow).to_prompt()


class _Workflow:
    def __init__(self, workflow):
        if not is_ui_workflow(workflow):
            raise ParameterImportError(
                "The ComfyUI workflow is not a UI-format workflow (a list of nodes and links)."
            )
        nodes = workflow["nodes"]
        if not nodes:
            raise ParameterImportError("The ComfyUI workflow has no nodes: nothing to import.")
        if len(nodes) > MAX_NODES:
            raise ParameterImportError(
                f"The ComfyUI workflow has {len(nodes):,} nodes; at most {MAX_NODES:,} can be "
                "imported."
            )
        self.nodes = {}
        for node in nodes:
            node_id = _node_id(node)
            if node_id in self.nodes:
                raise ParameterImportError(
                    f"The ComfyUI workflow is malformed: two nodes have the id {node_id}."
                )
            self.nodes[node_id] = node
        links = workflow.get("links") or []
        if not isinstance(links, list):
            raise ParameterImportError("The ComfyUI workflow is malformed: its links are not "
                                       "a list.")
        self.links = dict(_link(item) for item in links)

    def to_prompt(self):
        prompt = {}
        for node_id, node in self.nodes.items():
            kind = node["type"]
            if (kind in REROUTE_NODES + PRIMITIVE_NODES + NOTE_NODES
                    or node.get("mode") in (MODE_MUTED, MODE_BYPASSED)):
                continue
            inputs = self.widget_inputs(node_id, node)
            for slot, item in enumerate(_inputs(node)):
                if item.get("link") is None:
                    continue
                resolved = self.resolve_input(node_id, node, slot, item.get("type"), set())
                if resolved is None:
                    continue
                inputs[item["name"]] = (_widget_value(resolved[1]) if resolved[0] == "value"
                                        else list(resolved[1:]))
            prompt[node_id] = {"class_type": kind, "inputs": inputs}
        # As graphToPrompt: inputs linked to a node not sent (muted) are left out.
        for node in prompt.values():
            node["inputs"] = {
                name: value for name, value in node["inputs"].items()
                if not (isinstance(value, list) and value[0] not in prompt)
            }
        if not any(node["class_type"] in COMFY_SAMPLER_NODES for node in prompt.values()):
            self.refuse_without_sampler(prompt)
        return prompt

    def widget_inputs(self, node_id, node):
        """{input name: value} of the node's widgets, by ComfyUI's order of its inputs."""
        kind = node["type"]
        widgets = NODE_WIDGETS.get(kind)
        if widgets is None:
            return {}  # a node comfyui.py does not read: its links are enough
        values = node.get("widgets_values", [])
        if not isinstance(values, list):
            raise ParameterImportError(
                f"The ComfyUI workflow is malformed: the widget values of node {node_id} "
                f"({shorten(kind)}) are not a list."
            )
        inputs = {}
        position = 0
        names = [*widgets["required"], *widgets["optional"]]
        for index, name in enumerate(names):
            if name is CONTROL:
                # A string after the seed is its control value; files saved before the
                # frontend added it go straight on to the next widget.
                if position < len(values) and isinstance(values[position], str):
                    position += 1
                continue
            if position >= len(values):
                if index < len(widgets["required"]):
                    wanted = [item for item in widgets["required"] if item is not CONTROL]
                    raise ParameterImportError(
                        f"The ComfyUI workflow is malformed: node {node_id} ({kind}) has "
                        f"{len(values)} widget values, not its {len(wanted)} "
                        f"({', '.join(wanted)}); “{name}” is missing."
                    )
                break
            inputs[name] = _widget_value(values[position])
            position += 1
        return inputs

    def resolve_input(self, node_id, node, slot, wanted_type, visited):
        """Where a node's input slot takes its value from: ("link", origin id, origin
        slot), ("value", value) for a PrimitiveNode's, or None where nothing is connected
        (as ExecutableNodeDTO.resolveInput)."""
        for _ in range(MAX_LINK_DEPTH):
            if (node_id, slot) in visited:
                raise ParameterImportError(
                    f"The ComfyUI workflow's links loop through node {node_id} "
                    f"({shorten(node['type'])})."
                )
            visited.add((node_id, slot))
            link_id = _inputs(node)[slot].get("link")
            if link_id is None:
                return None
            link = self.links.get(link_id) if _is_id(link_id) else None
            if link is None:
                name = shorten(_inputs(node)[slot]["name"])
                raise ParameterImportError(
                    f"The ComfyUI workflow is malformed: input “{name}” of node {node_id} "
                    f"names link {shorten(link_id)}, which is not in its links."
                )
            origin_id, origin_slot = link
            origin = self.nodes.get(origin_id)
            if origin is None:
                raise ParameterImportError(
                    f"The ComfyUI workflow is malformed: link {link_id} comes from node "
                    f"{shorten(origin_id)}, which is not in the workflow."
                )
            kind = origin["type"]
            if kind in PRIMITIVE_NODES:
                values = origin.get("widgets_values")
                if isinstance(values, list) and values:
                    return ("value", values[0])
                return None
            if kind in NOTE_NODES:
                return None
            if kind in REROUTE_NODES:
                next_slot = origin_slot
            elif origin.get("mode") == MODE_BYPASSED:
                next_slot = _bypass_slot(origin_id, origin, origin_slot, wanted_type)
            else:
                return ("link", origin_id, origin_slot)
            if next_slot is None or next_slot >= len(_inputs(origin)):
                return None
            node_id, node, slot = origin_id, origin, next_slot
        raise ParameterImportError(
            f"The ComfyUI workflow's link into node {node_id} passes through more than "
            f"{MAX_LINK_DEPTH} reroute or bypassed nodes."
        )

    def refuse_without_sampler(self, prompt):
        unknown = sorted({node["class_type"] for node in prompt.values()
                          if node["class_type"] not in NODE_WIDGETS})
        if not unknown:
            raise ParameterImportError(
                "The ComfyUI workflow has no KSampler node (nor a SamplerCustomAdvanced) that "
                "runs: there are no parameters to import."
            )
        names = ", ".join(shorten(kind) for kind in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise ParameterImportError(
            "The ComfyUI workflow samples with none of ComfyUI's own KSampler, "
            "KSamplerAdvanced or SamplerCustomAdvanced nodes; its custom nodes cannot be "
            f"read here: {names}{more}."
        )


def _node_id(node):
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        raise ParameterImportError(
            "The ComfyUI workflow is malformed: a node has no id or type."
        )
    node_id = node.get("id")
    if isinstance(node_id, bool) or not isinstance(node_id, (int, str)):
        raise ParameterImportError(
            f"The ComfyUI workflow is malformed: a {shorten(node['type'])} node has no id."
        )
    inputs = node.get("inputs", [])
    if not isinstance(inputs, list) or not all(
        isinstance(item, dict) and isinstance(item.get("name"), str) for item in inputs
    ):
        raise ParameterImportError(
            f"The ComfyUI workflow is malformed: the inputs of node {shorten(node_id)} are "
            "not a list of named slots."
        )
    return str(node_id)


def _is_id(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _widget_value(value):
    """A widget's value as graphToPrompt sends it: a list wrapped, not to be read as a link."""
    return {"__value__": value} if isinstance(value, list) else value


def _inputs(node):
    return node.get("inputs") or []


def _link(item):
    """(link id, (origin node id, origin slot)) of a links row: LiteGraph's array, or the
    1.0 schema's object."""
    if isinstance(item, dict):
        item = [item.get(key) for key in ("id", "origin_id", "origin_slot", "target_id",
                                          "target_slot", "type")]
    if (
        not isinstance(item, list)
        or len(item) < 5
        or not (_is_id(item[0]) and _is_id(item[2]))
        or isinstance(item[1], bool)
        or not isinstance(item[1], (int, str))
    ):
        raise ParameterImportError(
            f"The ComfyUI workflow is malformed: a link is not [id, origin node, origin slot, "
            f"target node, target slot, type] ({shorten(item)})."
        )
    return item[0], (str(item[1]), item[2])


def _bypass_slot(node_id, node, output_slot, wanted_type):
    """The input a bypassed node passes to its output slot: the input at the same index
    where its type fits, else the first of the wanted type (ExecutableNodeDTO's
    #getBypassSlotIndex); None where none fits."""
    inputs = _inputs(node)
    outputs = node.get("outputs") if isinstance(node.get("outputs"), list) else []
    output = outputs[output_slot] if 0 <= output_slot < len(outputs) else {}
    output_type = output.get("type") if isinstance(output, dict) else None
    if wanted_type in ("*", "", None):
        return output_slot if output_slot < len(inputs) else (0 if inputs else None)
    if output_slot < len(inputs) and _fits(inputs[output_slot].get("type"), output_type) \
            and _fits(inputs[output_slot].get("type"), wanted_type):
        return output_slot
    for index, item in enumerate(inputs):
        if item.get("type") == wanted_type:
            return index
    return None


def _fits(input_type, output_type):
    """LiteGraph.isValidConnection for the plain types these nodes have."""
    if input_type in ("*", "", None) or output_type in ("*", "", None):
        return True
    if not isinstance(input_type, str) or not isinstance(output_type, str):
        return False
    return bool(set(input_type.upper().split(",")) & set(output_type.upper().split(",")))
