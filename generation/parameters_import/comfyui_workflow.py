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

Subgraphs (the frontend's nodes collapsed into one, since 2025) are expanded as
SubgraphNode.getInnerNodes does: the workflow's `definitions.subgraphs` hold each one's
nodes, links and input and output slots, a node whose type is a subgraph's id is an
instance of it, and its inner nodes run under the ids "instance:inner" ("12:5", nested
"12:7:5"). Inside a definition, links from the node -10 come in through the instance's
input of that slot and links to the node -20 leave by its output of that slot.
"""

import re

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
# The ids a subgraph's links give its input and output slots (LiteGraph's SUBGRAPH_INPUT_ID
# and SUBGRAPH_OUTPUT_ID).
SUBGRAPH_INPUT_ID = "-10"
SUBGRAPH_OUTPUT_ID = -20
# A subgraph's id, the type of its instances, is a UUID: a node of such a type that no
# definition names is a subgraph whose definition is missing.
SUBGRAPH_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                         re.IGNORECASE)
# The group nodes subgraphs replaced (extra.groupNodes), typed "workflow>Name" (or
# "workflow/Name" before 2024): expanding them needs each inner node's definition from the
# server, so they are not read.
GROUP_NODE_PREFIXES = ("workflow>", "workflow/")


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
        links = workflow.get("links") or []
        if not isinstance(links, list):
            raise ParameterImportError("The ComfyUI workflow is malformed: its links are not "
                                       "a list.")
        self.root = _Graph(nodes, links, "the workflow")
        self.definitions = _subgraph_definitions(workflow)
        self.subgraphs = {}  # the definitions read, by id
        # Every node of the graph with its subgraph instances expanded, by its id there.
        self.nodes = {}
        self.expand(self.root, (), None, True, ())

    def subgraph(self, kind):
        """The definition of the subgraph a node of this type is an instance of, or None."""
        if kind not in self.definitions:
            return None
        if kind not in self.subgraphs:
            self.subgraphs[kind] = _Subgraph(self.definitions[kind])
        return self.subgraphs[kind]

    def expand(self, graph, path, instance, runs, outer):
        """Place the graph's nodes under the path of instance ids, and the inner nodes of
        its subgraph instances after them (`outer`: the subgraphs around, to refuse one
        inside itself)."""
        for local_id, node in graph.nodes.items():
            if len(self.nodes) >= MAX_NODES:
                raise ParameterImportError(
                    f"The ComfyUI workflow has more than {MAX_NODES:,} nodes once its "
                    f"subgraphs are expanded; at most {MAX_NODES:,} can be imported."
                )
            node_id = ":".join((*path, local_id))
            # A muted or bypassed instance runs none of its inner nodes.
            node_runs = runs and node.get("mode") not in (MODE_MUTED, MODE_BYPASSED)
            placed = _Placed(node_id, node, graph, path, instance, node_runs)
            self.nodes[node_id] = placed
            subgraph = self.subgraph(node["type"])
            if subgraph is None:
                continue
            if subgraph.id in outer:
                raise ParameterImportError(
                    f"The ComfyUI workflow's {subgraph.where} contains itself (node "
                    f"{node_id}): it cannot be expanded."
                )
            if len(outer) >= MAX_LINK_DEPTH:
                raise ParameterImportError(
                    f"The ComfyUI workflow nests subgraphs more than {MAX_LINK_DEPTH} deep "
                    f"(node {node_id})."
                )
            self.expand(subgraph, (*path, local_id), placed, node_runs,
                        (*outer, subgraph.id))

    def to_prompt(self):
        prompt = {}
        for node_id, placed in self.nodes.items():
            node = placed.node
            kind = node["type"]
            if (kind in REROUTE_NODES + PRIMITIVE_NODES + NOTE_NODES or not placed.runs
                    or kind in self.definitions):
                continue
            inputs = self.widget_inputs(node_id, node)
            for slot, item in enumerate(_inputs(node)):
                if item.get("link") is None:
                    continue
                resolved = self.resolve_input(placed, slot, item.get("type"))
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

    def resolve_input(self, placed, slot, wanted_type):
        """Where a node's input slot takes its value from: ("link", origin id, origin
        slot), ("value", value) for a PrimitiveNode's or a subgraph instance's widget, or
        None where nothing is connected (as ExecutableNodeDTO.resolveInput and
        resolveOutput: through Reroutes, bypassed nodes, and into and out of subgraphs)."""
        visited = set()
        step = ("input", placed, slot)
        # An input and the output it is linked to per node passed through.
        for _ in range(2 * MAX_LINK_DEPTH):
            side, placed, slot = step
            if (side, placed.id, slot) in visited:
                raise ParameterImportError(
                    f"The ComfyUI workflow's links loop through node {placed.id} "
                    f"({shorten(placed.node['type'])})."
                )
            visited.add((side, placed.id, slot))
            step = (self.follow_input(placed, slot) if side == "input"
                    else self.follow_output(placed, slot, wanted_type))
            if step is None or step[0] in ("link", "value"):
                return step
        raise ParameterImportError(
            f"The ComfyUI workflow's link into node {placed.id} passes through more than "
            f"{MAX_LINK_DEPTH} reroute or bypassed nodes (or subgraph borders)."
        )

    def follow_input(self, placed, slot):
        """The output a node's input is linked to, or the instance's input a subgraph's
        input slot stands for (or the value of its widget)."""
        item = _inputs(placed.node)[slot]
        link_id = item.get("link")
        if link_id is None:
            return None
        link = placed.graph.links.get(link_id) if _is_id(link_id) else None
        if link is None:
            raise ParameterImportError(
                f"The ComfyUI workflow is malformed: input “{shorten(item['name'])}” of node "
                f"{placed.id} names link {shorten(link_id)}, which is not in its links."
            )
        origin_id, origin_slot = link
        if origin_id == SUBGRAPH_INPUT_ID and placed.instance is not None:
            return self.instance_input(placed.instance, origin_slot, link_id)
        origin = self.nodes.get(":".join((*placed.path, origin_id)))
        if origin is None:
            raise ParameterImportError(
                f"The ComfyUI workflow is malformed: link {link_id} comes from node "
                f"{shorten(origin_id)}, which is not in {placed.graph.where}."
            )
        return ("output", origin, origin_slot)

    def instance_input(self, instance, slot, link_id):
        """What a subgraph's input slot takes in this instance: the instance's input of
        that name where it is linked, else the value of its widget; None where it has
        neither (the inner node's own widget value stands)."""
        subgraph = self.subgraph(instance.node["type"])
        if not 0 <= slot < len(subgraph.input_names):
            raise ParameterImportError(
                f"The ComfyUI workflow is malformed: link {link_id} in {subgraph.where} "
                f"comes from its input {slot}, which it does not have."
            )
        # By name: the frontend leaves the unlinked widget inputs out of a saved node.
        name = subgraph.input_names[slot]
        inputs = _inputs(instance.node)
        index = next((index for index, item in enumerate(inputs) if item["name"] == name),
                     None)
        if index is not None and inputs[index].get("link") is not None:
            return ("input", instance, index)
        # The instance's widgets_values hold its promoted widgets' values, in the order of
        # the inputs they belong to. Where they do not match those (a newer frontend's
        # promotions), the inner widget's value stands: the frontend copies the instance's
        # values into the definition when it saves.
        values = instance.node.get("widgets_values")
        if (slot in subgraph.widget_inputs and isinstance(values, list)
                and len(values) == len(subgraph.widget_inputs)):
            return ("value", values[subgraph.widget_inputs.index(slot)])
        return None

    def follow_output(self, placed, slot, wanted_type):
        """The node an output is produced by: the origin itself, or the input a Reroute,
        a bypassed node or a subgraph's inner node passes on."""
        node = placed.node
        kind = node["type"]
        if kind in PRIMITIVE_NODES:
            values = node.get("widgets_values")
            return ("value", values[0]) if isinstance(values, list) and values else None
        if kind in NOTE_NODES:
            return None
        if kind in REROUTE_NODES:
            next_slot = slot
        elif node.get("mode") == MODE_BYPASSED:
            next_slot = _bypass_slot(placed.id, node, slot, wanted_type)
        elif kind in self.definitions:
            return self.subgraph_output(placed, slot)
        else:
            return ("link", placed.id, slot)
        if next_slot is None or next_slot >= len(_inputs(node)):
            return None
        return ("input", placed, next_slot)

    def subgraph_output(self, instance, slot):
        """The inner output a subgraph instance's output slot gives (None where nothing
        inside is linked to it)."""
        subgraph = self.subgraph(instance.node["type"])
        link_id = subgraph.outputs.get(slot)
        if link_id is None:
            return None
        origin_id, origin_slot = subgraph.links[link_id]
        if origin_id == SUBGRAPH_INPUT_ID:  # an input passed straight out
            return self.instance_input(instance, origin_slot, link_id)
        origin = self.nodes.get(f"{instance.id}:{origin_id}")
        if origin is None:
            raise ParameterImportError(
                f"The ComfyUI workflow is malformed: link {link_id} comes from node "
                f"{shorten(origin_id)}, which is not in {subgraph.where}."
            )
        return ("output", origin, origin_slot)

    def refuse_without_sampler(self, prompt):
        unknown = sorted({node["class_type"] for node in prompt.values()
                          if node["class_type"] not in NODE_WIDGETS})
        missing = [kind for kind in unknown if SUBGRAPH_ID.fullmatch(kind)]
        if missing:
            raise ParameterImportError(
                "The ComfyUI workflow has no sampler node that can be read: one of its nodes "
                "is a subgraph whose definition is missing from the file (subgraph "
                f"{shorten(missing[0])}); save the workflow again in ComfyUI."
            )
        groups = [kind for kind in unknown if kind.startswith(GROUP_NODE_PREFIXES)]
        if groups:
            raise ParameterImportError(
                f"The ComfyUI workflow has a group node ({shorten(groups[0])}), which is not "
                "read here: convert the group node back to nodes in ComfyUI (or to a "
                "subgraph) and save the workflow again."
            )
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


class _Graph:
    """The nodes and links of the workflow, or of one subgraph's definition."""

    def __init__(self, nodes, links, where):
        self.where = where  # "the workflow" or "subgraph “Name”", for the messages
        self.nodes = {}
        inside = "" if where == "the workflow" else f" in {where}"
        for node in nodes:
            node_id = _node_id(node)
            if node_id in self.nodes:
                raise ParameterImportError(
                    f"The ComfyUI workflow is malformed: two nodes have the id "
                    f"{node_id}{inside}."
                )
            self.nodes[node_id] = node
        self.links = {}  # link id: (origin node id, origin slot)
        self.targets = {}  # link id: (target node id, target slot), as written
        for item in links:
            link_id, origin, target = _link(item)
            self.links[link_id] = origin
            self.targets[link_id] = target
        # A subgraph's output slot: the link inside that ends at it (its one input).
        self.outputs = {target[1]: link_id for link_id, target in self.targets.items()
                        if target[0] == SUBGRAPH_OUTPUT_ID and _is_id(target[1])}


class _Subgraph(_Graph):
    """A subgraph's definition: its graph, and its input slots, by the names its
    instances' inputs carry."""

    def __init__(self, definition):
        self.id = definition["id"]
        name = definition.get("name")
        self.name = shorten(name if isinstance(name, str) and name.strip() else self.id)
        where = f"subgraph “{self.name}”"
        nodes = definition.get("nodes")
        links = definition.get("links") or []
        if isinstance(links, dict):  # as the frontend's own test files have them
            links = list(links.values())
        if not isinstance(nodes, list) or not isinstance(links, list):
            raise ParameterImportError(
                f"The ComfyUI workflow is malformed: {where} has no list of nodes and links."
            )
        if len(nodes) > MAX_NODES:
            raise ParameterImportError(
                f"The ComfyUI workflow's {where} has {len(nodes):,} nodes; at most "
                f"{MAX_NODES:,} can be imported."
            )
        super().__init__(nodes, links, where)
        inputs = definition.get("inputs") or []
        if not isinstance(inputs, list) or not all(
            isinstance(item, dict) and isinstance(item.get("name"), str) for item in inputs
        ):
            raise ParameterImportError(
                f"The ComfyUI workflow is malformed: the inputs of {where} are not a list "
                "of named slots."
            )
        self.input_names = [item["name"] for item in inputs]
        # The input slots an instance shows a widget for, in order (SubgraphNode's
        # promoted widgets): those linked inside to a node's widget.
        widget_slots = set()
        for link_id, (origin_id, origin_slot) in self.links.items():
            target_id, target_slot = self.targets[link_id]
            target = self.nodes.get(str(target_id))
            if origin_id != SUBGRAPH_INPUT_ID or target is None or not _is_id(target_slot):
                continue
            target_inputs = _inputs(target)
            if (0 <= target_slot < len(target_inputs)
                    and isinstance(target_inputs[target_slot].get("widget"), dict)):
                widget_slots.add(origin_slot)
        self.widget_inputs = sorted(widget_slots)


class _Placed:
    """A node where the expanded graph has it: its id there ("12:5" inside instance 12),
    the graph that holds it, the subgraph instance around it, whether it runs."""

    __slots__ = ("id", "node", "graph", "path", "instance", "runs")

    def __init__(self, node_id, node, graph, path, instance, runs):
        self.id, self.node, self.graph = node_id, node, graph
        self.path, self.instance, self.runs = path, instance, runs


def _subgraph_definitions(workflow):
    """{subgraph id: definition} of the workflow's `definitions.subgraphs`, and of those
    nested in a definition (as older frontends wrote them)."""
    definitions = {}
    pending = [workflow.get("definitions")]
    while pending:
        holder = pending.pop()
        if holder is None:
            continue
        subgraphs = holder.get("subgraphs") if isinstance(holder, dict) else None
        if not isinstance(subgraphs, list):
            raise ParameterImportError(
                "The ComfyUI workflow is malformed: its subgraph definitions are not a list."
            )
        for definition in subgraphs:
            if not isinstance(definition, dict) or not isinstance(definition.get("id"), str):
                raise ParameterImportError(
                    "The ComfyUI workflow is malformed: a subgraph definition has no id."
                )
            if definition["id"] in definitions:
                continue
            if len(definitions) >= MAX_NODES:
                raise ParameterImportError(
                    f"The ComfyUI workflow defines more than {MAX_NODES:,} subgraphs."
                )
            definitions[definition["id"]] = definition
            pending.append(definition.get("definitions"))
    return definitions


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
    """(link id, (origin node id, origin slot), (target node id, target slot)) of a links
    row: LiteGraph's array, or the 1.0 schema's object (as a subgraph's links are)."""
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
    return item[0], (str(item[1]), item[2]), (item[3], item[4])


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
