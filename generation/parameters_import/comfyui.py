"""ComfyUI's `prompt` chunk: the API-format graph it ran (node id -> class_type, inputs)."""

import math
import re

from .common import (
    HIRES_UPSCALER,
    ImportedParameters,
    ParameterImportError,
    float_value,
    int_value,
    load_json,
    sampler_name_for,
    shorten,
    text_value,
)

COMFY_SAMPLERS = {
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "heun": "Heun",
    "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a",
    "lms": "LMS",
    "dpm_fast": "DPM fast",
    "dpm_adaptive": "DPM adaptive",
    "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_sde_gpu": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",
    "dpmpp_3m_sde": "DPM++ 3M SDE",
    "dpmpp_3m_sde_gpu": "DPM++ 3M SDE",
    "ddpm": "DDPM",
    "lcm": "LCM",
    "ddim": "DDIM",
    "uni_pc": "UniPC",
    "uni_pc_bh2": "UniPC",  # diffusers' UniPC solves with bh2 too
    "ipndm": "iPNDM",
    "deis": "DEIS",
}
COMFY_SCHEDULES = {
    "normal": "",
    "karras": "Karras",
    "exponential": "Exponential",
    "sgm_uniform": "SGM Uniform",
    "simple": "Simple",
    "ddim_uniform": "DDIM uniform",
    "beta": "Beta",
    "kl_optimal": "KL Optimal",
    "linear_quadratic": "Linear quadratic",
}
# Node class and input names as ComfyUI defines them: nodes.py (KSampler, the loaders,
# EmptyLatentImage), comfy_extras/nodes_custom_sampler.py (SamplerCustomAdvanced, RandomNoise,
# BasicGuider, CFGGuider, KSamplerSelect, BasicScheduler), nodes_flux.py (FluxGuidance,
# CLIPTextEncodeFlux), nodes_sd3.py (EmptySD3LatentImage, TripleCLIPLoader,
# CLIPTextEncodeSD3), nodes_model_advanced.py (ModelSamplingFlux, ModelSamplingSD3).
COMFY_SAMPLER_NODES = ("KSampler", "KSamplerAdvanced", "SamplerCustomAdvanced")
# FLUX.1's and SD 3.x's transformer files load with UNETLoader ("Load Diffusion Model").
COMFY_CHECKPOINT_NODES = ("CheckpointLoaderSimple", "CheckpointLoader", "UNETLoader")
COMFY_MODEL_NAME_INPUTS = {"UNETLoader": "unet_name"}  # else "ckpt_name"
COMFY_TEXT_NODES = ("CLIPTextEncode", "CLIPTextEncodeSDXL", "CLIPTextEncodeFlux",
                    "CLIPTextEncodeSD3")
COMFY_LORA_NODES = ("LoraLoader", "LoraLoaderModelOnly")
COMFY_SHIFT_NODES = ("ModelSamplingFlux", "ModelSamplingSD3")
COMFY_EMPTY_LATENT_NODES = ("EmptyLatentImage", "EmptySD3LatentImage")
COMFY_TEXT_ENCODER_NODES = ("DualCLIPLoader", "TripleCLIPLoader", "CLIPLoader")
# Nodes only FLUX.1 graphs have: their guidance is the distilled one.
COMFY_FLUX_NODES = ("FluxGuidance", "CLIPTextEncodeFlux", "ModelSamplingFlux")
# The guidance FLUX.1 [dev] embeds where no node sets one (comfy/model_base.py: Flux).
COMFY_FLUX_DEFAULT_GUIDANCE = 3.5
# ModelSamplingFlux's defaults: the model's own resolution-dependent shift.
COMFY_FLUX_SHIFTS = {"max_shift": 1.15, "base_shift": 0.5}
COMFY_LATENT_UPSCALE_NODES = ("LatentUpscale", "LatentUpscaleBy")
# Nodes that only decode, save or show the result: nothing in them to apply.
COMFY_OUTPUT_NODES = {"VAEDecode", "VAEDecodeTiled", "SaveImage", "PreviewImage"}
MAX_LINK_DEPTH = 64
# Far above the few hundred nodes of the largest shared workflows; the report of the nodes
# not applied grows with the square of their number.
MAX_NODES = 5000


# Text encoders with a text input each: the prompt's first, the others after.
PROMPT_INPUTS = {
    "CLIPTextEncodeSDXL": ("text_g", "text_l"),
    "CLIPTextEncodeFlux": ("t5xxl", "clip_l"),
    "CLIPTextEncodeSD3": ("t5xxl", "clip_g", "clip_l"),
}
ENCODER_LABELS = {"text_l": "CLIP-L", "clip_l": "CLIP-L", "clip_g": "CLIP-G"}


def _is_link(value):
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
    )


class _ComfyGraph:
    def __init__(self, graph, result):
        if not isinstance(graph, dict) or not graph:
            raise ParameterImportError(
                "The ComfyUI prompt is not an API-format graph (node id → class_type, inputs)."
            )
        if len(graph) > MAX_NODES:
            raise ParameterImportError(
                f"The ComfyUI prompt has {len(graph):,} nodes; at most {MAX_NODES:,} can be "
                "imported."
            )
        self.nodes = {}
        for node_id, node in graph.items():
            if (
                not isinstance(node, dict)
                or not isinstance(node.get("class_type"), str)
                or not isinstance(node.get("inputs", {}), dict)
            ):
                raise ParameterImportError(
                    f"The ComfyUI prompt is malformed: node {shorten(node_id)} has no "
                    "class_type or inputs."
                )
            self.nodes[str(node_id)] = node
        self.result = result
        self.used = set()  # nodes whose content the form applies

    def node(self, link):
        if not _is_link(link):
            return None, None
        node = self.nodes.get(str(link[0]))
        if node is None:
            raise ParameterImportError(
                f"The ComfyUI prompt is malformed: a link points to node {link[0]}, "
                "which is not in the graph."
            )
        return str(link[0]), node

    def inputs(self, node):
        return node.get("inputs") or {}

    def value(self, node, name, label, convert):
        """An input's value, following a link to a primitive node (e.g. a shared seed)."""
        value = self.inputs(node).get(name)
        for _ in range(MAX_LINK_DEPTH):
            if not _is_link(value):
                break
            source_id, source = self.node(value)
            scalars = {
                key: item for key, item in self.inputs(source).items() if not _is_link(item)
            }
            preferred = [key for key in (name, "value", "text", "string", "seed", "int",
                                         "float") if key in scalars]
            if preferred:
                value = scalars[preferred[0]]
            elif len(scalars) == 1:
                value = next(iter(scalars.values()))
            else:
                links = [item for item in self.inputs(source).values() if _is_link(item)]
                if len(links) != 1:
                    self.result.report(label, f"computed by a {source['class_type']} node")
                    return None
                value = links[0]
            self.used.add(source_id)
        if _is_link(value):
            self.result.report(label, "linked through too many nodes")
            return None
        if value is None:
            return None
        return convert(value, label)

    def follow(self, link, wanted, through):
        """The first node of a class in `wanted` up the chain from `link`, passing through
        each node by its input named in `through` (e.g. LoraLoader by "model")."""
        node_id, node = self.node(link)
        for _ in range(MAX_LINK_DEPTH):
            if node is None or node["class_type"] in wanted:
                return node_id, node
            next_link = next(
                (self.inputs(node)[name] for name in through
                 if _is_link(self.inputs(node).get(name))),
                None,
            )
            node_id, node = self.node(next_link)
        return None, None

    def prompt_text(self, link, label):
        # Conditioning passes through ControlNet, area and combine nodes; those are
        # reported as nodes not applied.
        node_id, node = self.node(link)
        for _ in range(MAX_LINK_DEPTH):
            if node is None:
                break
            if node["class_type"] in COMFY_TEXT_NODES:
                self.used.add(node_id)
                # Encoders of their own text: the one the model reads most (SDXL's
                # CLIP-G, T5's) is the prompt; the others are reported where they differ.
                main, *others = PROMPT_INPUTS.get(node["class_type"], ("text",))
                text = self.value(node, main, label, text_value)
                for other in others:
                    other_text = self.value(node, other, label, text_value)
                    if other_text and other_text != text:
                        self.result.report(f"{label} ({ENCODER_LABELS[other]} text)",
                                           other_text)
                return text, node
            inputs = self.inputs(node)
            if node["class_type"] == "ControlNetApplyAdvanced" and _is_link(link):
                through = "negative" if link[1] == 1 else "positive"
            else:
                through = next(
                    (name for name in ("conditioning", "conditioning_1", "conditioning_to",
                                       label.split()[0].lower())
                     if _is_link(inputs.get(name))),
                    None,
                )
            if through is None:
                break
            link = inputs.get(through)
            node_id, node = self.node(link)
        self.result.report(label, "not found in the workflow")
        return None, None


def parse_comfyui_prompt(graph) -> ImportedParameters:
    """ComfyUI's `prompt` chunk: the graph it ran, in API format. Reads the sampler node
    whose latent starts empty (the first pass): a KSampler, or a SamplerCustomAdvanced with
    its noise, guider, sampler and scheduler nodes; its prompts, size, model (a checkpoint,
    or a FLUX.1 / SD 3.x transformer file), LoRAs, shift and CLIP skip, and FLUX.1's
    guidance; other nodes that change the image are reported."""
    if isinstance(graph, (str, bytes)):
        graph = load_json(graph, "ComfyUI prompt")
    result = ImportedParameters(source="comfyui")
    comfy = _ComfyGraph(graph, result)

    samplers = [(node_id, node) for node_id, node in comfy.nodes.items()
                if node["class_type"] in COMFY_SAMPLER_NODES]
    if not samplers:
        raise ParameterImportError(
            "The ComfyUI workflow has no KSampler node (nor a SamplerCustomAdvanced): there "
            "are no parameters to import."
        )

    def first_pass(item):
        _, latent = comfy.node(comfy.inputs(item[1]).get("latent_image"))
        starts_empty = latent is not None and latent["class_type"] in COMFY_EMPTY_LATENT_NODES
        # Ids of more than 18 digits are last, as other names (int() refuses past 4,300).
        number = int(item[0]) if item[0].isdecimal() and len(item[0]) <= 18 else math.inf
        return (not starts_empty, number, item[0])

    sampler_id, sampler_node = min(samplers, key=first_pass)
    comfy.used.add(sampler_id)
    result.values["hires_fix"] = False  # a second pass is reported below
    advanced = sampler_node["class_type"] == "KSamplerAdvanced"
    sampler = (_custom_sampler_as_ksampler(comfy, sampler_node)
               if sampler_node["class_type"] == "SamplerCustomAdvanced" else sampler_node)
    flux = any(node["class_type"] in COMFY_FLUX_NODES or (
        node["class_type"] == "DualCLIPLoader" and comfy.inputs(node).get("type") == "flux")
        for node in comfy.nodes.values())

    seed = comfy.value(sampler, "noise_seed" if advanced else "seed", "Seed", int_value)
    if seed is not None:
        result.values["seed"] = seed
    steps = comfy.value(sampler, "steps", "Steps", int_value)
    if steps is not None:
        result.values["steps"] = steps
    cfg = comfy.value(sampler, "cfg", "CFG scale", float_value)
    if flux:
        # FLUX.1 [dev] embeds its guidance (FluxGuidance) and runs without CFG (cfg 1).
        result.values["guidance_scale"] = _comfy_flux_guidance(
            comfy, comfy.inputs(sampler).get("positive"))
        if cfg is not None and cfg != 1:
            result.report("CFG scale", f"{cfg:g} (FLUX.1 runs with its distilled guidance "
                                       "only, no CFG)")
    elif cfg is not None:
        result.values["guidance_scale"] = cfg
    sampler_name = comfy.value(sampler, "sampler_name", "Sampler", text_value)
    scheduler = comfy.value(sampler, "scheduler", "Scheduler", text_value) or "normal"
    if sampler_name:
        schedule = COMFY_SCHEDULES.get(scheduler, scheduler)
        if sampler_name == "ddim" and scheduler == "ddim_uniform":
            schedule = ""
        if scheduler == "simple" and _is_flow_graph(comfy, flux):
            schedule = ""  # on a flow model, the flow Euler's own schedule
        a1111_name = COMFY_SAMPLERS.get(sampler_name, sampler_name)
        name = sampler_name_for(a1111_name, schedule, result)
        if name:
            result.values["sampler"] = name
    if advanced:
        if comfy.inputs(sampler).get("add_noise") == "disable":
            result.report("Add noise", "disable")
        start = comfy.inputs(sampler).get("start_at_step", 0)
        end = comfy.inputs(sampler).get("end_at_step", 10000)
        if start not in (0, None) or (isinstance(end, int) and steps and end < steps):
            result.report("Sampling steps", f"{start} to {end} of {steps}")
    else:
        denoise = comfy.value(sampler, "denoise", "Denoise", float_value)
        if denoise is not None and denoise != 1:
            result.report("Denoise", denoise)

    positive, positive_node = comfy.prompt_text(comfy.inputs(sampler).get("positive"),
                                                "Positive prompt")
    if positive is not None:
        result.values["prompt"] = positive
    negative = None
    if comfy.inputs(sampler).get("negative") is not None:  # BasicGuider has none
        negative, _ = comfy.prompt_text(comfy.inputs(sampler).get("negative"),
                                        "Negative prompt")
    result.values["negative_prompt"] = negative or ""

    result.values["shift"] = None  # the model's default, unless the model chain sets one
    _comfy_model_chain(comfy, comfy.inputs(sampler).get("model"))
    checkpoint_id, checkpoint = comfy.follow(
        comfy.inputs(sampler).get("model"), COMFY_CHECKPOINT_NODES, ("model",)
    )
    if checkpoint is None:  # e.g. a custom loader: fall back on any checkpoint node
        checkpoint_id, checkpoint = next(
            ((node_id, node) for node_id, node in comfy.nodes.items()
             if node["class_type"] in COMFY_CHECKPOINT_NODES),
            (None, None),
        )
    if checkpoint is not None:
        comfy.used.add(checkpoint_id)
        name_input = COMFY_MODEL_NAME_INPUTS.get(checkpoint["class_type"], "ckpt_name")
        name = comfy.value(checkpoint, name_input, "Model", text_value)
        if name:
            result.model_name = name.strip()
    else:
        result.report("Model", "no checkpoint loader in the workflow")

    result.values["clip_skip"] = 1
    if positive_node is not None:
        clip_id, clip_node = comfy.follow(comfy.inputs(positive_node).get("clip"),
                                          ("CLIPSetLastLayer",) + COMFY_CHECKPOINT_NODES,
                                          ("clip",))
        if clip_node is not None and clip_node["class_type"] == "CLIPSetLastLayer":
            layer = comfy.value(clip_node, "stop_at_clip_layer", "Clip skip", int_value)
            if layer is not None:
                result.values["clip_skip"] = -layer if layer < 0 else layer
                comfy.used.add(clip_id)

    latent_id, latent = comfy.node(comfy.inputs(sampler).get("latent_image"))
    if latent is not None and latent["class_type"] in COMFY_EMPTY_LATENT_NODES:
        comfy.used.add(latent_id)
        for name, label in (("width", "Width"), ("height", "Height"),
                            ("batch_size", "Batch size")):
            value = comfy.value(latent, name, label, int_value)
            if value is not None:
                result.values[name] = value
    elif latent is not None:
        result.report("Latent image", f"from a {latent['class_type']} node (not an empty "
                                      "latent: e.g. image to image)")

    _comfy_hires_fix(comfy, sampler_id, sampler)
    for node_id, node in comfy.nodes.items():
        if node_id not in comfy.used and node["class_type"] not in COMFY_OUTPUT_NODES:
            result.report(*_comfy_node_note(node_id, node, comfy))
    return result


def _is_flow_graph(comfy, flux):
    """Whether the graph runs a flow-matching model (FLUX.1 or SD 3.x)."""
    flow_nodes = (*COMFY_SHIFT_NODES, "EmptySD3LatentImage", "TripleCLIPLoader",
                  "CLIPTextEncodeSD3")
    return flux or any(node["class_type"] in flow_nodes for node in comfy.nodes.values())


def _custom_sampler_as_ksampler(comfy, node):
    """A SamplerCustomAdvanced's settings as a KSampler node holds them, read from the
    nodes it takes: RandomNoise (the seed), BasicGuider or CFGGuider (the model, prompts
    and CFG), KSamplerSelect (the sampler), BasicScheduler (scheduler, steps, denoise). A
    part made by another node is reported."""
    inputs = {"latent_image": comfy.inputs(node).get("latent_image")}
    parts = [
        ("noise", "Noise", {"RandomNoise": {"noise_seed": "seed"}}),
        ("guider", "Guider", {
            "BasicGuider": {"model": "model", "conditioning": "positive"},
            "CFGGuider": {"model": "model", "positive": "positive", "negative": "negative",
                          "cfg": "cfg"},
        }),
        ("sampler", "Sampler", {"KSamplerSelect": {"sampler_name": "sampler_name"}}),
        ("sigmas", "Sigmas", {"BasicScheduler": {"scheduler": "scheduler", "steps": "steps",
                                                 "denoise": "denoise"}}),
    ]
    for input_name, label, readers in parts:
        part_id, part = comfy.node(comfy.inputs(node).get(input_name))
        if part is None:
            continue
        names = readers.get(part["class_type"])
        if names is None:
            comfy.result.report(label, f"from a {part['class_type']} node")
            continue
        comfy.used.add(part_id)
        for name, as_name in names.items():
            if name in comfy.inputs(part):
                inputs[as_name] = comfy.inputs(part)[name]
    return {"class_type": "KSampler", "inputs": inputs}


def _comfy_flux_guidance(comfy, link):
    """FLUX.1's guidance on the positive conditioning: a FluxGuidance node's, or a
    CLIPTextEncodeFlux's; FLUX.1's default where neither sets one."""
    node_id, node = comfy.node(link)
    for _ in range(MAX_LINK_DEPTH):
        if node is None:
            break
        if node["class_type"] in ("FluxGuidance", "CLIPTextEncodeFlux"):
            comfy.used.add(node_id)
            guidance = comfy.value(node, "guidance", "Guidance", float_value)
            return COMFY_FLUX_DEFAULT_GUIDANCE if guidance is None else guidance
        node_id, node = comfy.node(comfy.inputs(node).get("conditioning"))
    return COMFY_FLUX_DEFAULT_GUIDANCE


def _comfy_model_chain(comfy, link):
    """The nodes on the sampler's model chain up to its loader: LoRA loaders (as
    <lora:name:weight> in the prompt: the name is the file's without folder and extension,
    looked up in the team's library as an A1111 image's) and the flow shift
    (ModelSamplingSD3's; ModelSamplingFlux's at the size it names, where it is not
    FLUX.1's default)."""
    node_id, node = comfy.node(link)
    for _ in range(MAX_LINK_DEPTH):
        if node is None:
            return
        if node["class_type"] in COMFY_LORA_NODES:
            _comfy_lora(comfy, node)
        elif node["class_type"] in COMFY_SHIFT_NODES:
            _comfy_shift(comfy, node)
        else:
            return
        comfy.used.add(node_id)
        node_id, node = comfy.node(comfy.inputs(node).get("model"))


def _comfy_lora(comfy, node):
    file_name = comfy.value(node, "lora_name", "LoRA", text_value)
    weight = comfy.value(node, "strength_model", "LoRA strength", float_value)
    weight = 1.0 if weight is None else weight
    clip_weight = comfy.value(node, "strength_clip", "LoRA CLIP strength", float_value)
    if file_name:
        name = _file_stem(file_name)
        prompt = comfy.result.values.get("prompt") or ""
        comfy.result.values["prompt"] = f"{prompt} <lora:{name}:{weight:g}>".strip()
        comfy.result.lora_hashes.setdefault(name, "")
        if clip_weight is not None and clip_weight != weight:
            comfy.result.report("LoRA CLIP strength", f"{name}: {clip_weight:g} "
                                                      f"(the model's {weight:g} is used)")


def _file_stem(file_name):
    """A model file's name without its folder and extension, as libraries name it."""
    name = re.split(r"[\\/]", file_name.strip())[-1]
    return re.sub(r"\.(safetensors|ckpt|pt|pth|bin|gguf)$", "", name, flags=re.IGNORECASE)


def _comfy_shift(comfy, node):
    """The recipe's shift of a ModelSamplingSD3 or ModelSamplingFlux node. ComfyUI's FLUX.1
    sampling shifts time by exp(mu), mu growing with the image's tokens from base_shift (256
    tokens) to max_shift (4096): the same as a shift of exp(mu) (ModelSamplingFlux in
    comfy_extras/nodes_model_advanced.py, flux_time_shift in comfy/model_sampling.py)."""
    if node["class_type"] == "ModelSamplingSD3":
        shift = comfy.value(node, "shift", "Shift", float_value)
        if shift is not None:
            comfy.result.values["shift"] = shift
        return
    shifts = {name: comfy.value(node, name, f"Flux {name.replace('_', ' ')}", float_value)
              for name in COMFY_FLUX_SHIFTS}
    width = comfy.value(node, "width", "Flux shift width", int_value)
    height = comfy.value(node, "height", "Flux shift height", int_value)
    if shifts == COMFY_FLUX_SHIFTS or None in (*shifts.values(), width, height):
        return  # FLUX.1's own shift (at the image's size)
    slope = (shifts["max_shift"] - shifts["base_shift"]) / (4096 - 256)
    mu = (width * height / (8 * 8 * 2 * 2)) * slope + shifts["base_shift"] - slope * 256
    comfy.result.values["shift"] = round(math.exp(mu), 4)


def _comfy_hires_fix(comfy, first_id, first):
    """A second KSampler on the first pass's latent scaled up (LatentUpscale or
    LatentUpscaleBy): the hires fix, its denoise the hires strength."""
    for node_id, node in comfy.nodes.items():
        if node["class_type"] != "KSampler" or node_id in comfy.used:
            continue
        upscale_id, upscale = comfy.node(comfy.inputs(node).get("latent_image"))
        if upscale is None or upscale["class_type"] not in COMFY_LATENT_UPSCALE_NODES:
            continue
        source_link = comfy.inputs(upscale).get("samples")
        if not _is_link(source_link) or str(source_link[0]) != first_id:
            continue
        values = comfy.result.values
        if upscale["class_type"] == "LatentUpscaleBy":
            scale = comfy.value(upscale, "scale_by", "Hires upscale", float_value)
        else:
            width = comfy.value(upscale, "width", "Hires width", int_value)
            scale = width / values["width"] if width and values.get("width") else None
        if scale is None:
            return
        comfy.used.update((node_id, upscale_id))
        values.update(hires_fix=True, hires_scale=round(scale, 4))
        steps = comfy.value(node, "steps", "Hires steps", int_value)
        values["hires_steps"] = steps if steps is not None else 0
        denoise = comfy.value(node, "denoise", "Hires denoising", float_value)
        if denoise is not None:
            values["hires_strength"] = denoise
        method = comfy.inputs(upscale).get("upscale_method")
        if isinstance(method, str):
            comfy.result.report("Hires upscaler",
                                f"latent {method} ({HIRES_UPSCALER} is used here)")
        for name in ("seed", "cfg", "sampler_name", "scheduler", "positive", "negative"):
            if comfy.inputs(node).get(name) != comfy.inputs(first).get(name):
                comfy.result.report("Hires pass", f"its {name} differs from the first pass's")
        return


def _comfy_node_note(node_id, node, comfy):
    """(label, value) for a node the form does not apply."""
    kind, inputs = node["class_type"], comfy.inputs(node)
    if kind in ("LoraLoader", "LoraLoaderModelOnly"):
        weight = inputs.get("strength_model")
        suffix = f" ({weight})" if weight is not None and not _is_link(weight) else ""
        return "LoRA", f"{inputs.get('lora_name')}{suffix}"
    if kind == "VAELoader":
        return "VAE", inputs.get("vae_name")
    if kind in COMFY_TEXT_ENCODER_NODES:
        names = [_file_stem(value) for name, value in sorted(inputs.items())
                 if name.startswith("clip_name") and isinstance(value, str)]
        return "Text encoders (the model's own are used)", ", ".join(names)
    if kind in COMFY_SAMPLER_NODES:
        return "Second sampler pass", f"{kind} node {node_id} (e.g. hires fix or refiner)"
    if kind in ("LoadImage", "VAEEncode", "VAEEncodeForInpaint"):
        return "Source image", f"{kind} node {node_id} (image to image is not imported)"
    if kind in ("LatentUpscale", "LatentUpscaleBy", "ImageScale", "ImageScaleBy",
                "UpscaleModelLoader", "ImageUpscaleWithModel"):
        return "Upscale", f"{kind} node {node_id}"
    return "ComfyUI node", f"{kind} ({node_id})"
