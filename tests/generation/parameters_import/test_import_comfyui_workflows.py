"""Import of ComfyUI's UI-format workflow: the `workflow` chunk of a PNG that has no `prompt`
chunk, and the workflow .json ComfyUI's Save writes. Its nodes' widgets_values are mapped to
input names in the order ComfyUI defines them (with the frontend's control_after_generate
value after a seed), links resolved through Reroutes and bypassed nodes, muted nodes left
out, a PrimitiveNode's value given to the widget it feeds: as the frontend's graphToPrompt
does, so a workflow imports as the API graph it queues would."""

import copy
import json

from django.test import SimpleTestCase, override_settings

from generation.parameters_import import (
    ParameterImportError,
    parse_comfyui_json,
    parse_comfyui_prompt,
    parse_comfyui_workflow,
    read_png_parameters,
    workflow_to_prompt,
)
from generation.parameters_import.comfyui import MAX_LINK_DEPTH, MAX_NODES
from tests.base import StudioTestCase
from tests.generation.parameters_import import test_parameters_import
from tests.generation.parameters_import.test_import_comfyui_flow_graphs import (
    FLUX_DEV_CUSTOM_SAMPLER,
)
from tests.generation.parameters_import.test_parameters_import import COMFYUI_GRAPH, png_bytes


def node(node_id, kind, *, inputs=(), outputs=(), widgets=None, mode=0, order=0):
    """A node as ComfyUI's Save writes it. `inputs`: (name, type, link id or None) or
    (name, type, link id, widget name) for a widget converted to an input; `outputs`:
    (name, type, [link ids])."""
    item = {
        "id": node_id,
        "type": kind,
        "pos": [100 * order, 100],
        "size": [315, 262],
        "flags": {},
        "order": order,
        "mode": mode,
        "inputs": [
            {"name": slot[0], "type": slot[1], "link": slot[2],
             **({"widget": {"name": slot[3]}} if len(slot) > 3 else {})}
            for slot in inputs
        ],
        "outputs": [{"name": name, "type": kind_, "links": links, "slot_index": index}
                    for index, (name, kind_, links) in enumerate(outputs)],
        "properties": {"Node name for S&R": kind},
    }
    if widgets is not None:
        item["widgets_values"] = widgets
    return item


def workflow(nodes, links):
    return {
        "last_node_id": max(item["id"] for item in nodes),
        "last_link_id": max((link[0] for link in links), default=0),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
        "version": 0.4,
    }


# ComfyUI's default workflow (SD1.5 txt2img), as its Save writes it.
SD15_DEFAULT = workflow(
    [
        node(7, "CLIPTextEncode", inputs=[("clip", "CLIP", 5)],
             outputs=[("CONDITIONING", "CONDITIONING", [6])], widgets=["text, watermark"]),
        node(6, "CLIPTextEncode", inputs=[("clip", "CLIP", 3)],
             outputs=[("CONDITIONING", "CONDITIONING", [4])],
             widgets=["beautiful scenery nature glass bottle landscape, , purple galaxy "
                      "bottle,"]),
        node(5, "EmptyLatentImage", outputs=[("LATENT", "LATENT", [2])],
             widgets=[512, 512, 1]),
        node(3, "KSampler",
             inputs=[("model", "MODEL", 1), ("positive", "CONDITIONING", 4),
                     ("negative", "CONDITIONING", 6), ("latent_image", "LATENT", 2)],
             outputs=[("LATENT", "LATENT", [7])],
             widgets=[156680208700286, "randomize", 20, 8, "euler", "normal", 1]),
        node(8, "VAEDecode", inputs=[("samples", "LATENT", 7), ("vae", "VAE", 8)],
             outputs=[("IMAGE", "IMAGE", [9])]),
        node(9, "SaveImage", inputs=[("images", "IMAGE", 9)], widgets=["ComfyUI"]),
        node(4, "CheckpointLoaderSimple",
             outputs=[("MODEL", "MODEL", [1]), ("CLIP", "CLIP", [3, 5]),
                      ("VAE", "VAE", [8])],
             widgets=["v1-5-pruned-emaonly.safetensors"]),
    ],
    [
        [1, 4, 0, 3, 0, "MODEL"],
        [2, 5, 0, 3, 3, "LATENT"],
        [3, 4, 1, 6, 0, "CLIP"],
        [4, 6, 0, 3, 1, "CONDITIONING"],
        [5, 4, 1, 7, 0, "CLIP"],
        [6, 7, 0, 3, 2, "CONDITIONING"],
        [7, 3, 0, 8, 0, "LATENT"],
        [8, 4, 2, 8, 1, "VAE"],
        [9, 8, 0, 9, 0, "IMAGE"],
    ],
)

# COMFYUI_GRAPH (test_parameters_import.py) as the workflow it was queued from: the default
# workflow with a LoraLoader and a CLIPSetLastLayer.
COMFYUI_WORKFLOW = workflow(
    [
        node(3, "KSampler",
             inputs=[("model", "MODEL", 3), ("positive", "CONDITIONING", 7),
                     ("negative", "CONDITIONING", 8), ("latent_image", "LATENT", 9)],
             outputs=[("LATENT", "LATENT", [10])],
             widgets=[1566802087, "fixed", 20, 8.0, "dpmpp_2m", "karras", 1.0]),
        node(4, "CheckpointLoaderSimple",
             outputs=[("MODEL", "MODEL", [1]), ("CLIP", "CLIP", [2]), ("VAE", "VAE", [11])],
             widgets=["sd15/tiny-sd15.safetensors"]),
        node(5, "EmptyLatentImage", outputs=[("LATENT", "LATENT", [9])],
             widgets=[512, 640, 2]),
        node(6, "CLIPTextEncode", inputs=[("clip", "CLIP", 5)],
             outputs=[("CONDITIONING", "CONDITIONING", [7])],
             widgets=["beautiful scenery, glass bottle, galaxy"]),
        node(7, "CLIPTextEncode", inputs=[("clip", "CLIP", 6)],
             outputs=[("CONDITIONING", "CONDITIONING", [8])], widgets=["text, watermark"]),
        node(8, "VAEDecode", inputs=[("samples", "LATENT", 10), ("vae", "VAE", 11)],
             outputs=[("IMAGE", "IMAGE", [12])]),
        node(9, "SaveImage", inputs=[("images", "IMAGE", 12)], widgets=["ComfyUI"]),
        node(10, "LoraLoader", inputs=[("model", "MODEL", 1), ("clip", "CLIP", 2)],
             outputs=[("MODEL", "MODEL", [3]), ("CLIP", "CLIP", [4])],
             widgets=["paper_cut.safetensors", 0.8, 0.8]),
        node(11, "CLIPSetLastLayer", inputs=[("clip", "CLIP", 4)],
             outputs=[("CLIP", "CLIP", [5, 6])], widgets=[-2]),
    ],
    [
        [1, 4, 0, 10, 0, "MODEL"],
        [2, 4, 1, 10, 1, "CLIP"],
        [3, 10, 0, 3, 0, "MODEL"],
        [4, 10, 1, 11, 0, "CLIP"],
        [5, 11, 0, 6, 0, "CLIP"],
        [6, 11, 0, 7, 0, "CLIP"],
        [7, 6, 0, 3, 1, "CONDITIONING"],
        [8, 7, 0, 3, 2, "CONDITIONING"],
        [9, 5, 0, 3, 3, "LATENT"],
        [10, 3, 0, 8, 0, "LATENT"],
        [11, 4, 2, 8, 1, "VAE"],
        [12, 8, 0, 9, 0, "IMAGE"],
    ],
)

# ComfyUI's FLUX.1 [dev] example workflow (FLUX_DEV_CUSTOM_SAMPLER's graph): width and
# height in PrimitiveNodes that feed EmptySD3LatentImage and ModelSamplingFlux, their
# widgets converted to inputs.
FLUX_DEV_WORKFLOW = workflow(
    [
        node(6, "CLIPTextEncode", inputs=[("clip", "CLIP", 1)],
             outputs=[("CONDITIONING", "CONDITIONING", [2])],
             widgets=["cute anime girl with massive fluffy fennec ears"]),
        node(8, "VAEDecode", inputs=[("samples", "LATENT", 12), ("vae", "VAE", 13)],
             outputs=[("IMAGE", "IMAGE", [14])]),
        node(9, "SaveImage", inputs=[("images", "IMAGE", 14)], widgets=["ComfyUI"]),
        node(10, "VAELoader", outputs=[("VAE", "VAE", [13])], widgets=["ae.safetensors"]),
        node(11, "DualCLIPLoader", outputs=[("CLIP", "CLIP", [1])],
             widgets=["t5xxl_fp16.safetensors", "clip_l.safetensors", "flux", "default"]),
        node(12, "UNETLoader", outputs=[("MODEL", "MODEL", [6])],
             widgets=["flux1-dev.safetensors", "default"]),
        node(13, "SamplerCustomAdvanced",
             inputs=[("noise", "NOISE", 7), ("guider", "GUIDER", 8), ("sampler", "SAMPLER", 9),
                     ("sigmas", "SIGMAS", 10), ("latent_image", "LATENT", 11)],
             outputs=[("output", "LATENT", [12]), ("denoised_output", "LATENT", [])]),
        node(16, "KSamplerSelect", outputs=[("SAMPLER", "SAMPLER", [9])], widgets=["euler"]),
        node(17, "BasicScheduler", inputs=[("model", "MODEL", 5)],
             outputs=[("SIGMAS", "SIGMAS", [10])], widgets=["simple", 20, 1]),
        node(22, "BasicGuider",
             inputs=[("model", "MODEL", 4), ("conditioning", "CONDITIONING", 3)],
             outputs=[("GUIDER", "GUIDER", [8])]),
        node(25, "RandomNoise", outputs=[("NOISE", "NOISE", [7])],
             widgets=[219670278747233, "randomize"]),
        node(26, "FluxGuidance", inputs=[("conditioning", "CONDITIONING", 2)],
             outputs=[("CONDITIONING", "CONDITIONING", [3])], widgets=[3.5]),
        # The PrimitiveNode's height is what runs: the frontend writes it into the widget
        # it feeds before queueing (this widget value is stale).
        node(27, "EmptySD3LatentImage",
             inputs=[("width", "INT", 17, "width"), ("height", "INT", 18, "height")],
             outputs=[("LATENT", "LATENT", [11])], widgets=[1024, 1024, 1]),
        node(30, "ModelSamplingFlux",
             inputs=[("model", "MODEL", 6), ("width", "INT", 15, "width"),
                     ("height", "INT", 16, "height")],
             outputs=[("MODEL", "MODEL", [4, 5])], widgets=[1.15, 0.5, 1024, 768]),
        node(34, "PrimitiveNode", outputs=[("INT", "INT", [15, 17])],
             widgets=[1024, "fixed"]),
        node(35, "PrimitiveNode", outputs=[("INT", "INT", [16, 18])],
             widgets=[768, "fixed"]),
        node(36, "Note", widgets=["The reference sampling implementation auto adjusts the "
                                  "shift value based on the resolution."]),
    ],
    [
        [1, 11, 0, 6, 0, "CLIP"],
        [2, 6, 0, 26, 0, "CONDITIONING"],
        [3, 26, 0, 22, 1, "CONDITIONING"],
        [4, 30, 0, 22, 0, "MODEL"],
        [5, 30, 0, 17, 0, "MODEL"],
        [6, 12, 0, 30, 0, "MODEL"],
        [7, 25, 0, 13, 0, "NOISE"],
        [8, 22, 0, 13, 1, "GUIDER"],
        [9, 16, 0, 13, 2, "SAMPLER"],
        [10, 17, 0, 13, 3, "SIGMAS"],
        [11, 27, 0, 13, 4, "LATENT"],
        [12, 13, 0, 8, 0, "LATENT"],
        [13, 10, 0, 8, 1, "VAE"],
        [14, 8, 0, 9, 0, "IMAGE"],
        [15, 34, 0, 30, 1, "INT"],
        [16, 35, 0, 30, 2, "INT"],
        [17, 34, 0, 27, 0, "INT"],
        [18, 35, 0, 27, 1, "INT"],
    ],
)


def reroute_and_bypass_workflow():
    """The default workflow with a bypassed LoraLoader between the checkpoint and the rest,
    the model reaching the KSampler through two Reroutes, and a hires pass that is muted."""
    graph = copy.deepcopy(SD15_DEFAULT)
    nodes = {item["id"]: item for item in graph["nodes"]}
    nodes[3]["inputs"][0]["link"] = 23  # model: from the second Reroute
    nodes[6]["inputs"][0]["link"] = 21  # clip: from the LoraLoader
    nodes[7]["inputs"][0]["link"] = 24
    graph["nodes"] += [
        node(10, "LoraLoader", mode=4, inputs=[("model", "MODEL", 1), ("clip", "CLIP", 3)],
             outputs=[("MODEL", "MODEL", [20]), ("CLIP", "CLIP", [21, 24])],
             widgets=["paper_cut.safetensors", 0.8, 0.8]),
        node(20, "Reroute", inputs=[("", "*", 20)], outputs=[("", "MODEL", [22])]),
        node(21, "Reroute", inputs=[("", "*", 22)], outputs=[("", "MODEL", [23])]),
        node(12, "LatentUpscaleBy", mode=2, inputs=[("samples", "LATENT", 25)],
             outputs=[("LATENT", "LATENT", [26])], widgets=["nearest-exact", 1.5]),
        node(13, "KSampler", mode=2,
             inputs=[("model", "MODEL", 27), ("positive", "CONDITIONING", 28),
                     ("negative", "CONDITIONING", 29), ("latent_image", "LATENT", 26)],
             outputs=[("LATENT", "LATENT", [])],
             widgets=[5, "fixed", 12, 8, "euler", "normal", 0.5]),
    ]
    graph["links"] = [link for link in graph["links"] if link[0] not in (1, 3, 5)] + [
        [1, 4, 0, 10, 0, "MODEL"],
        [3, 4, 1, 10, 1, "CLIP"],
        [20, 10, 0, 20, 0, "MODEL"],
        [21, 10, 1, 6, 0, "CLIP"],
        [22, 20, 0, 21, 0, "MODEL"],
        [23, 21, 0, 3, 0, "MODEL"],
        [24, 10, 1, 7, 0, "CLIP"],
        [25, 3, 0, 12, 0, "LATENT"],
        [26, 12, 0, 13, 3, "LATENT"],
        [27, 21, 0, 13, 0, "MODEL"],
        [28, 6, 0, 13, 1, "CONDITIONING"],
        [29, 7, 0, 13, 2, "CONDITIONING"],
    ]
    return graph


def same_import(test, result, expected):
    test.assertEqual(result.values, expected.values)
    test.assertEqual(result.model_name, expected.model_name)
    test.assertEqual(result.lora_hashes, expected.lora_hashes)
    test.assertEqual(result.not_applied, expected.not_applied)


class ParseComfyUIWorkflowTestCase(SimpleTestCase):
    def test_the_default_sd15_workflow_fills_the_form(self):
        result = parse_comfyui_workflow(json.dumps(SD15_DEFAULT))
        self.assertEqual(result.source, "comfyui")
        self.assertEqual(result.values, {
            "seed": 156680208700286,  # the "randomize" after it is the frontend's control
            "steps": 20,
            "guidance_scale": 8.0,
            "sampler": "Euler",
            "prompt": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
            "negative_prompt": "text, watermark",
            "clip_skip": 1,
            "shift": None,
            "width": 512,
            "height": 512,
            "batch_size": 1,
            "hires_fix": False,
        })
        self.assertEqual(result.model_name, "v1-5-pruned-emaonly.safetensors")
        self.assertEqual(result.not_applied, [])

    def test_the_workflow_converts_to_the_api_graph_the_frontend_queues(self):
        prompt = workflow_to_prompt(COMFYUI_WORKFLOW)
        self.assertEqual(prompt, {
            node_id: {"class_type": item["class_type"], "inputs": item["inputs"]}
            for node_id, item in COMFYUI_GRAPH.items()
        })

    def test_the_workflow_of_an_api_graph_imports_the_same_parameters(self):
        same_import(self, parse_comfyui_workflow(COMFYUI_WORKFLOW),
                    parse_comfyui_prompt(COMFYUI_GRAPH))

    def test_flux_dev_with_the_custom_sampler_and_primitive_nodes(self):
        result = parse_comfyui_workflow(json.dumps(FLUX_DEV_WORKFLOW))
        same_import(self, result, parse_comfyui_prompt(FLUX_DEV_CUSTOM_SAMPLER))
        self.assertEqual(
            (result.values["seed"], result.values["guidance_scale"], result.values["width"],
             result.values["height"], result.model_name),
            (219670278747233, 3.5, 1024, 768, "flux1-dev.safetensors"),
        )
        prompt = workflow_to_prompt(FLUX_DEV_WORKFLOW)
        self.assertNotIn("34", prompt)  # PrimitiveNodes and Notes are the frontend's only
        self.assertNotIn("36", prompt)
        self.assertEqual(prompt["30"]["inputs"], FLUX_DEV_CUSTOM_SAMPLER["30"]["inputs"])

    def test_reroutes_pass_links_on_and_bypassed_or_muted_nodes_do_not_run(self):
        graph = reroute_and_bypass_workflow()
        prompt = workflow_to_prompt(graph)
        # The bypassed LoraLoader passes its model and clip through; the Reroutes vanish.
        self.assertEqual(prompt["3"]["inputs"]["model"], ["4", 0])
        self.assertEqual(prompt["6"]["inputs"]["clip"], ["4", 1])
        self.assertEqual(prompt["7"]["inputs"]["clip"], ["4", 1])
        self.assertEqual(set(prompt), {"3", "4", "5", "6", "7", "8", "9"})
        result = parse_comfyui_workflow(graph)
        same_import(self, result, parse_comfyui_workflow(SD15_DEFAULT))
        self.assertNotIn("<lora:", result.values["prompt"])
        self.assertFalse(result.values["hires_fix"])

    def test_a_bypassed_node_passes_the_input_of_the_type_wanted(self):
        graph = reroute_and_bypass_workflow()
        lora = next(item for item in graph["nodes"] if item["id"] == 10)
        # Inputs in another order than the outputs: the type picks the input.
        lora["inputs"].reverse()
        self.assertEqual(workflow_to_prompt(graph)["3"]["inputs"]["model"], ["4", 0])
        self.assertEqual(workflow_to_prompt(graph)["6"]["inputs"]["clip"], ["4", 1])

    def test_an_input_linked_to_a_muted_node_is_left_out(self):
        graph = copy.deepcopy(COMFYUI_WORKFLOW)
        next(item for item in graph["nodes"] if item["id"] == 11)["mode"] = 2
        prompt = workflow_to_prompt(graph)
        self.assertNotIn("11", prompt)
        self.assertNotIn("clip", prompt["6"]["inputs"])
        self.assertEqual(parse_comfyui_workflow(graph).values["clip_skip"], 1)

    def test_files_saved_before_the_control_widget_and_the_1_0_link_schema(self):
        graph = copy.deepcopy(SD15_DEFAULT)
        sampler = next(item for item in graph["nodes"] if item["id"] == 3)
        sampler["widgets_values"] = [42, 20, 8, "euler", "normal", 1]
        graph["links"] = [dict(zip(("id", "origin_id", "origin_slot", "target_id",
                                    "target_slot", "type"), link, strict=True))
                          for link in graph["links"]]
        result = parse_comfyui_workflow(graph)
        self.assertEqual((result.values["seed"], result.values["steps"]), (42, 20))

    def test_a_json_file_in_either_format(self):
        self.assertEqual(parse_comfyui_json(json.dumps(COMFYUI_WORKFLOW)).values,
                         parse_comfyui_json(json.dumps(COMFYUI_GRAPH)).values)


class ReadWorkflowFileTestCase(SimpleTestCase):
    def test_a_png_with_only_the_workflow_chunk(self):
        result = read_png_parameters(png_bytes({"workflow": json.dumps(SD15_DEFAULT)}),
                                     max_bytes=10**6)
        self.assertEqual((result.source, result.values["seed"], result.values["width"]),
                         ("comfyui", 156680208700286, 512))

    def test_the_prompt_chunk_is_preferred_it_is_what_ran(self):
        data = png_bytes({"workflow": json.dumps(SD15_DEFAULT),
                          "prompt": json.dumps(COMFYUI_GRAPH)})
        result = read_png_parameters(data, max_bytes=10**6)
        self.assertEqual(result.values["seed"], 1566802087)

    def test_a_workflow_json_file(self):
        for text in (json.dumps(SD15_DEFAULT, indent=2),
                     "\ufeff" + json.dumps(SD15_DEFAULT)):  # with a byte order mark
            result = read_png_parameters(text.encode(), max_bytes=10**6)
            self.assertEqual(result.values["steps"], 20)


class HostileWorkflowTestCase(SimpleTestCase):
    def assert_refused(self, graph, message):
        with self.assertRaisesMessage(ParameterImportError, message):
            parse_comfyui_workflow(graph if isinstance(graph, str) else json.dumps(graph))

    def changed(self, change, graph=SD15_DEFAULT):
        graph = copy.deepcopy(graph)
        change(graph, {item["id"]: item for item in graph["nodes"]})
        return graph

    def test_malformed_workflows_are_refused_with_what_is_wrong(self):
        def link(graph, index, row):
            graph["links"][index] = row

        cases = [
            ("{not json", "The ComfyUI workflow is not valid JSON"),
            ("[1, 2]", "not a UI-format workflow"),
            ('{"nodes": []}', "The ComfyUI workflow has no nodes"),
            ('{"nodes": [{"id": 1}]}', "a node has no id or type"),
            ('{"nodes": [{"type": "KSampler"}]}', "a KSampler node has no id"),
            ('{"nodes": [{"id": 1, "type": "KSampler", "inputs": {"a": 1}}]}',
             "the inputs of node 1 are not a list of named slots"),
            ('{"nodes": [{"id": 1, "type": "SaveImage"}], "links": 3}',
             "its links are not a list"),
            (self.changed(lambda g, n: g["nodes"].append(n[3])), "two nodes have the id 3"),
            (self.changed(lambda g, n: link(g, 0, [1, 99, 0, 3, 0, "MODEL"])),
             "link 1 comes from node 99, which is not in the workflow"),
            (self.changed(lambda g, n: n[3]["inputs"][0].update(link=77)),
             "input “model” of node 3 names link 77, which is not in its links"),
            (self.changed(lambda g, n: n[3]["inputs"][0].update(link=[1])),
             "names link [1], which is not in its links"),
            (self.changed(lambda g, n: link(g, 0, ["one", 4, 0, 3, 0, "MODEL"])),
             "a link is not [id, origin node, origin slot, target node, target slot, type]"),
            (self.changed(lambda g, n: link(g, 0, [1, 4])), "a link is not [id, origin"),
            (self.changed(lambda g, n: n[3].update(widgets_values=[1])),
             "node 3 (KSampler) has 1 widget values, not its 6 (seed, steps, cfg, "
             "sampler_name, scheduler, denoise); “steps” is missing"),
            (self.changed(lambda g, n: n[4].pop("widgets_values")),
             "node 4 (CheckpointLoaderSimple) has 0 widget values"),
            (self.changed(lambda g, n: n[3].update(widgets_values={"seed": 1})),
             "the widget values of node 3 (KSampler) are not a list"),
            (self.changed(lambda g, n: n[3]["widgets_values"].__setitem__(2, "many")),
             "Steps: “many” is not a whole number."),
            # A list is a widget's value, never a link (graphToPrompt wraps it too).
            (self.changed(lambda g, n: n[3]["widgets_values"].__setitem__(0, ["4", 0])),
             "Seed: “{'__value__': ['4', 0]}” is not a whole number."),
            (self.changed(lambda g, n: n[4].update(widgets_values=[5])),
             "Model is not text"),
            (self.changed(lambda g, n: n[3].update(mode=4)),
             "no KSampler node (nor a SamplerCustomAdvanced) that runs"),
        ]
        for graph, message in cases:
            with self.subTest(message=message):
                self.assert_refused(graph, message)

    def test_a_custom_sampler_is_named(self):
        def custom(graph, nodes):
            nodes[3]["type"] = "KSampler (Efficient)"

        self.assert_refused(self.changed(custom),
                            "its custom nodes cannot be read here: KSampler (Efficient).")

    def test_link_cycles_and_long_reroute_chains_end(self):
        def cycle(graph, nodes):
            graph["nodes"] += [
                node(20, "Reroute", inputs=[("", "*", 21)], outputs=[("", "*", [20])]),
                node(21, "Reroute", inputs=[("", "*", 20)], outputs=[("", "*", [1, 21])]),
            ]
            graph["links"] += [[20, 20, 0, 21, 0, "*"], [21, 21, 0, 20, 0, "*"]]
            graph["links"][0] = [1, 21, 0, 3, 0, "MODEL"]

        self.assert_refused(self.changed(cycle), "The ComfyUI workflow's links loop through "
                                                 "node 21 (Reroute).")

        def bypass_cycle(graph, nodes):
            graph["nodes"].append(node(20, "LoraLoader", mode=4,
                                       inputs=[("model", "MODEL", 20), ("clip", "CLIP", None)],
                                       outputs=[("MODEL", "MODEL", [1, 20])],
                                       widgets=["x.safetensors", 1, 1]))
            graph["links"] += [[20, 20, 0, 20, 0, "MODEL"]]
            graph["links"][0] = [1, 20, 0, 3, 0, "MODEL"]

        self.assert_refused(self.changed(bypass_cycle), "links loop through node 20")

        def chain(graph, nodes):
            count = MAX_LINK_DEPTH + 5
            for index in range(count):
                node_id = 100 + index
                source = 101 + index if index + 1 < count else 4
                graph["nodes"].append(node(node_id, "Reroute",
                                           inputs=[("", "*", 1000 + index)],
                                           outputs=[("", "MODEL", [])]))
                graph["links"].append([1000 + index, source, 0, node_id, 0, "MODEL"])
            graph["links"][0] = [1, 100, 0, 3, 0, "MODEL"]

        self.assert_refused(self.changed(chain), f"passes through more than {MAX_LINK_DEPTH} "
                                                 "reroute or bypassed nodes")

    def test_too_many_nodes_are_refused_before_any_work(self):
        def many(graph, nodes):
            graph["nodes"] += [node(1000 + index, "Note", widgets=["x"])
                               for index in range(MAX_NODES)]

        self.assert_refused(self.changed(many),
                            f"The ComfyUI workflow has {MAX_NODES + 7:,} nodes; at most "
                            f"{MAX_NODES:,} can be imported.")
        prompt = {str(index): {"class_type": "Note", "inputs": {}}
                  for index in range(MAX_NODES + 1)}
        with self.assertRaisesMessage(ParameterImportError, "at most 5,000 can be imported"):
            parse_comfyui_prompt(prompt)


class ImportWorkflowViewTestCase(StudioTestCase):
    # The import view's helpers (its test case, imported by name, would run here too).
    setUp = test_parameters_import.ImportViewTestCase.setUp
    post = test_parameters_import.ImportViewTestCase.post
    initial = test_parameters_import.ImportViewTestCase.initial
    assert_refused = test_parameters_import.ImportViewTestCase.assert_refused

    def test_a_png_with_only_its_workflow_fills_the_form(self):
        response = self.post(png_bytes({"workflow": json.dumps(COMFYUI_WORKFLOW)}),
                             name="ComfyUI_00002_.png")
        initial = self.initial(response)
        self.assertEqual(initial["model"], self.model.pk)  # tiny-sd15.safetensors
        self.assertEqual(initial["prompt"],
                         "beautiful scenery, glass bottle, galaxy <lora:paper_cut:0.8>")
        self.assertContains(response, "Imported from ComfyUI_00002_.png (ComfyUI)")

    def test_a_workflow_json_fills_the_form(self):
        response = self.post(json.dumps(COMFYUI_WORKFLOW).encode(), name="workflow.json")
        self.assertEqual(self.initial(response)["seed"], 1566802087)
        self.assertContains(response, "Imported from workflow.json (ComfyUI)")

    def test_bad_workflows_are_refused_with_a_message(self):
        graph = copy.deepcopy(SD15_DEFAULT)
        graph["links"][0] = [1, 99, 0, 3, 0, "MODEL"]
        self.assert_refused(png_bytes({"workflow": json.dumps(graph)}),
                            "link 1 comes from node 99")
        self.assert_refused(b'{"nodes": [', "The ComfyUI file is not valid JSON",
                            name="workflow.json")
        self.assert_refused(b"{\xff}", "not UTF-8 text", name="workflow.json")

    @override_settings(STUDIO_MAX_UPLOAD_BYTES=2000)
    def test_a_workflow_json_over_the_upload_limit_is_refused(self):
        self.assert_refused(json.dumps(SD15_DEFAULT).encode(), "The file is too large to import",
                            name="workflow.json")
