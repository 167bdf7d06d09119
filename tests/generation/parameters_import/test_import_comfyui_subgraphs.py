"""Import of ComfyUI workflows whose nodes sit in subgraphs (the frontend's nodes collapsed
into one, saved in `definitions.subgraphs`; an instance is a node whose type is the
subgraph's id). They are expanded as the frontend's graphToPrompt does (the inner nodes
under "instance:inner" ids, links in through the subgraph's input slots, node -10, and out
through its output slots, node -20), so a workflow imports the same parameters with its
sampler inside a subgraph as flat; legacy group nodes are refused with what to do."""

import copy
import json

from django.test import SimpleTestCase

from generation.parameters_import import (
    ParameterImportError,
    parse_comfyui_workflow,
    read_png_parameters,
    workflow_to_prompt,
)
from generation.parameters_import.comfyui import MAX_LINK_DEPTH, MAX_NODES
from tests.generation.parameters_import.test_import_comfyui_workflows import (
    COMFYUI_WORKFLOW,
    node,
    same_import,
    workflow,
)
from tests.generation.parameters_import.test_parameters_import import png_bytes

SAMPLER_ID = "8f4c2a9e-3b1d-4e6f-9a7c-5d2e1f0b3a64"
GENERATE_ID = "1c7e5b3a-9d2f-4a8e-b6c1-0f9e8d7c6b5a"


def link(link_id, origin, origin_slot, target, target_slot, kind):
    """A link inside a subgraph, as the frontend saves it (an object)."""
    return {"id": link_id, "origin_id": origin, "origin_slot": origin_slot,
            "target_id": target, "target_slot": target_slot, "type": kind}


def definition(subgraph_id, name, nodes, links, inputs, outputs):
    """A subgraph's definition as the frontend saves it; `inputs` and `outputs`:
    (name, type)."""
    def slots(items, io_id):
        return [
            {"id": f"{subgraph_id[:8]}-{io_id}-{index}", "name": slot_name, "type": kind,
             "linkIds": [item["id"] for item in links
                         if (item["origin_id"], item["origin_slot"]) == (io_id, index)
                         or (item["target_id"], item["target_slot"]) == (io_id, index)],
             "localized_name": slot_name, "pos": [0, 20 * index]}
            for index, (slot_name, kind) in enumerate(items)
        ]

    return {
        "id": subgraph_id,
        "version": 1,
        "state": {"lastGroupId": 0, "lastNodeId": 40, "lastLinkId": 40, "lastRerouteId": 0},
        "revision": 0,
        "config": {},
        "name": name,
        "inputNode": {"id": -10, "bounding": [0, 0, 120, 100]},
        "outputNode": {"id": -20, "bounding": [900, 0, 120, 60]},
        "inputs": slots(inputs, -10),
        "outputs": slots(outputs, -20),
        "widgets": [],
        "nodes": nodes,
        "groups": [],
        "links": links,
        "extra": {},
    }


def flat_nodes(*ids):
    """Copies of COMFYUI_WORKFLOW's nodes, by id."""
    nodes = {item["id"]: item for item in copy.deepcopy(COMFYUI_WORKFLOW)["nodes"]}
    return [nodes[node_id] for node_id in ids]


def sampler_subgraph():
    """COMFYUI_WORKFLOW's KSampler (3), its prompts (6, 7) and its empty latent (5) as the
    subgraph "Sampler": the model and the clip come in through its inputs, the latent
    leaves by its output."""
    return definition(
        SAMPLER_ID, "Sampler",
        flat_nodes(3, 5, 6, 7),
        [
            link(3, -10, 0, 3, 0, "MODEL"),
            link(5, -10, 1, 6, 0, "CLIP"),
            link(6, -10, 1, 7, 0, "CLIP"),
            link(7, 6, 0, 3, 1, "CONDITIONING"),
            link(8, 7, 0, 3, 2, "CONDITIONING"),
            link(9, 5, 0, 3, 3, "LATENT"),
            link(10, 3, 0, -20, 0, "LATENT"),
        ],
        inputs=[("model", "MODEL"), ("clip", "CLIP")],
        outputs=[("LATENT", "LATENT")],
    )


def sampler_instance(node_id=20, *, model=3, clip=5, latent=(10,)):
    return node(node_id, SAMPLER_ID,
                inputs=[("model", "MODEL", model), ("clip", "CLIP", clip)],
                outputs=[("LATENT", "LATENT", list(latent))], widgets=[])


def with_subgraphs(graph, *definitions):
    graph["definitions"] = {"subgraphs": list(definitions)}
    graph["extra"]["frontendVersion"] = "1.28.7"
    return graph


def sampler_workflow():
    """COMFYUI_WORKFLOW with its sampler, prompts and latent in the subgraph "Sampler"
    (instance 20); the loaders, the decoder and the save outside."""
    return with_subgraphs(workflow(
        [*flat_nodes(4, 10, 11, 8, 9), sampler_instance()],
        [
            [1, 4, 0, 10, 0, "MODEL"],
            [2, 4, 1, 10, 1, "CLIP"],
            [3, 10, 0, 20, 0, "MODEL"],
            [4, 10, 1, 11, 0, "CLIP"],
            [5, 11, 0, 20, 1, "CLIP"],
            [10, 20, 0, 8, 0, "LATENT"],
            [11, 4, 2, 8, 1, "VAE"],
            [12, 8, 0, 9, 0, "IMAGE"],
        ],
    ), sampler_subgraph())


def nested_workflow():
    """The "Sampler" subgraph inside a "Generate" subgraph (instance 30) that holds the
    loaders too: only the decoder and the save are outside."""
    generate = definition(
        GENERATE_ID, "Generate",
        [*flat_nodes(4, 10, 11), sampler_instance(20)],
        [
            link(1, 4, 0, 10, 0, "MODEL"),
            link(2, 4, 1, 10, 1, "CLIP"),
            link(3, 10, 0, 20, 0, "MODEL"),
            link(4, 10, 1, 11, 0, "CLIP"),
            link(5, 11, 0, 20, 1, "CLIP"),
            link(10, 20, 0, -20, 0, "LATENT"),
            link(11, 4, 2, -20, 1, "VAE"),
        ],
        inputs=[],
        outputs=[("LATENT", "LATENT"), ("VAE", "VAE")],
    )
    return with_subgraphs(workflow(
        [node(30, GENERATE_ID, outputs=[("LATENT", "LATENT", [10]), ("VAE", "VAE", [11])],
              widgets=[]),
         *flat_nodes(8, 9)],
        [[10, 30, 0, 8, 0, "LATENT"], [11, 30, 1, 8, 1, "VAE"], [12, 8, 0, 9, 0, "IMAGE"]],
    ), generate, sampler_subgraph())


def seed_input_workflow(*, instance_seed, seed_link=None, compressed=False):
    """sampler_workflow with the KSampler's seed promoted: a third input of the subgraph,
    linked inside to the seed widget. The instance gives it `instance_seed` from its own
    widget, or from what `seed_link` links."""
    graph = sampler_workflow()
    subgraph = graph["definitions"]["subgraphs"][0]
    sampler = next(item for item in subgraph["nodes"] if item["id"] == 3)
    sampler["inputs"].append({"name": "seed", "type": "INT", "widget": {"name": "seed"},
                              "link": 40})
    subgraph["links"].append(link(40, -10, 2, 3, 4, "INT"))
    subgraph["inputs"].append({"id": "seed-slot", "name": "seed", "type": "INT",
                               "linkIds": [40], "pos": [0, 40]})
    instance = next(item for item in graph["nodes"] if item["id"] == 20)
    if not compressed:  # the frontend's Save keeps it; a PNG's workflow chunk drops it
        instance["inputs"].append({"name": "seed", "type": "INT",
                                   "widget": {"name": "seed"}, "link": seed_link})
    instance["widgets_values"] = [instance_seed]
    return graph


class ImportSubgraphTestCase(SimpleTestCase):
    def test_a_sampler_inside_a_subgraph_imports_as_the_flat_workflow(self):
        graph = sampler_workflow()
        same_import(self, parse_comfyui_workflow(json.dumps(graph)),
                    parse_comfyui_workflow(COMFYUI_WORKFLOW))
        prompt = workflow_to_prompt(graph)
        # The inner nodes under the instance's id; the instance itself is not sent.
        self.assertEqual(set(prompt), {"4", "8", "9", "10", "11", "20:3", "20:5", "20:6",
                                       "20:7"})
        self.assertEqual(prompt["20:3"]["inputs"]["model"], ["10", 0])
        self.assertEqual(prompt["20:3"]["inputs"]["positive"], ["20:6", 0])
        self.assertEqual(prompt["20:7"]["inputs"]["clip"], ["11", 0])
        self.assertEqual(prompt["8"]["inputs"]["samples"], ["20:3", 0])
        self.assertEqual(prompt["20:3"]["inputs"]["seed"], 1566802087)

    def test_a_png_whose_workflow_has_a_subgraph(self):
        result = read_png_parameters(png_bytes({"workflow": json.dumps(sampler_workflow())}),
                                     max_bytes=10**6)
        self.assertEqual((result.source, result.values["seed"], result.values["height"],
                          result.model_name),
                         ("comfyui", 1566802087, 640, "sd15/tiny-sd15.safetensors"))

    def test_nested_subgraphs(self):
        graph = nested_workflow()
        same_import(self, parse_comfyui_workflow(graph), parse_comfyui_workflow(COMFYUI_WORKFLOW))
        prompt = workflow_to_prompt(graph)
        self.assertEqual(prompt["30:20:3"]["inputs"]["model"], ["30:10", 0])
        self.assertEqual(prompt["8"]["inputs"], {"samples": ["30:20:3", 0], "vae": ["30:4", 2]})
        # Definitions nested in a definition, as older frontends saved them, are read too.
        generate, sampler = graph["definitions"]["subgraphs"]
        graph["definitions"]["subgraphs"] = [generate]
        generate["definitions"] = {"subgraphs": [sampler]}
        self.assertEqual(workflow_to_prompt(graph), prompt)

    def test_two_instances_of_one_subgraph(self):
        graph = sampler_workflow()
        graph["nodes"].append(sampler_instance(21, model=13, clip=15, latent=()))
        graph["links"] += [[13, 10, 0, 21, 0, "MODEL"], [15, 11, 0, 21, 1, "CLIP"]]
        prompt = workflow_to_prompt(graph)
        self.assertEqual(prompt["21:3"]["inputs"]["positive"], ["21:6", 0])
        self.assertEqual(prompt["21:3"]["inputs"]["model"], ["10", 0])
        self.assertEqual(parse_comfyui_workflow(graph).values["seed"], 1566802087)

    def test_an_input_fed_by_the_instances_widget(self):
        # The instance's value, not the one its definition was saved with.
        self.assertEqual(parse_comfyui_workflow(seed_input_workflow(instance_seed=777))
                         .values["seed"], 777)
        # A PNG's workflow chunk leaves the unlinked widget input out of the instance.
        graph = seed_input_workflow(instance_seed=778, compressed=True)
        self.assertEqual(parse_comfyui_workflow(graph).values["seed"], 778)
        # Widget values the inputs do not account for: the definition's value stands.
        graph = seed_input_workflow(instance_seed=779)
        graph["nodes"][-1]["widgets_values"] = [779, "extra"]
        self.assertEqual(parse_comfyui_workflow(graph).values["seed"], 1566802087)

    def test_an_input_fed_by_a_primitive_node(self):
        graph = seed_input_workflow(instance_seed=777, seed_link=41)
        graph["nodes"].append(node(40, "PrimitiveNode", outputs=[("INT", "INT", [41])],
                                   widgets=[4242, "fixed"]))
        graph["links"].append([41, 40, 0, 20, 2, "INT"])
        self.assertEqual(parse_comfyui_workflow(graph).values["seed"], 4242)
        self.assertEqual(workflow_to_prompt(graph)["20:3"]["inputs"]["seed"], 4242)

    def test_a_muted_or_bypassed_instance_runs_none_of_its_nodes(self):
        for mode in (2, 4):
            graph = sampler_workflow()
            graph["nodes"][-1]["mode"] = mode
            with self.subTest(mode=mode), self.assertRaisesMessage(
                    ParameterImportError, "no KSampler node (nor a SamplerCustomAdvanced) that "
                                          "runs"):
                parse_comfyui_workflow(graph)

    def test_a_bypassed_node_inside_a_subgraph(self):
        graph = sampler_workflow()
        subgraph = graph["definitions"]["subgraphs"][0]
        subgraph["nodes"].append(node(12, "LoraLoaderModelOnly", mode=4,
                                      inputs=[("model", "MODEL", 3)],
                                      outputs=[("MODEL", "MODEL", [13])],
                                      widgets=["x.safetensors", 1.0]))
        subgraph["links"][0] = link(3, -10, 0, 12, 0, "MODEL")
        subgraph["links"].append(link(13, 12, 0, 3, 0, "MODEL"))
        subgraph["nodes"][0]["inputs"][0]["link"] = 13
        prompt = workflow_to_prompt(graph)
        self.assertEqual(prompt["20:3"]["inputs"]["model"], ["10", 0])
        self.assertNotIn("20:12", prompt)


class HostileSubgraphTestCase(SimpleTestCase):
    def assert_refused(self, graph, message):
        with self.assertRaisesMessage(ParameterImportError, message):
            parse_comfyui_workflow(json.dumps(graph))

    def changed(self, change, graph=None):
        graph = graph or sampler_workflow()
        change(graph, graph["definitions"]["subgraphs"][0])
        return graph

    def test_a_subgraph_that_contains_itself(self):
        def itself(graph, subgraph):
            subgraph["nodes"].append(sampler_instance(21, model=None, clip=None, latent=()))

        self.assert_refused(self.changed(itself), "The ComfyUI workflow's subgraph “Sampler” "
                                                  "contains itself (node 20:21)")

        def each_other(graph, subgraph):
            generate, sampler = graph["definitions"]["subgraphs"]
            sampler["nodes"].append(node(21, GENERATE_ID, widgets=[]))

        self.assert_refused(self.changed(each_other, nested_workflow()),
                            "subgraph “Generate” contains itself (node 30:20:21)")

    def test_links_to_what_the_subgraph_does_not_have(self):
        def setter(index, **values):
            return lambda graph, subgraph: subgraph["links"][index].update(values)

        cases = [
            (setter(3, origin_id=99), "link 7 comes from node 99, which is not in subgraph "
                                      "“Sampler”."),
            (setter(6, origin_id=99), "link 10 comes from node 99, which is not in subgraph "
                                      "“Sampler”."),
            (setter(0, origin_slot=5), "link 3 in subgraph “Sampler” comes from its input 5, "
                                       "which it does not have."),
            (lambda graph, subgraph: subgraph["nodes"][0]["inputs"][1].update(link=77),
             "input “positive” of node 20:3 names link 77, which is not in its links."),
            (lambda graph, subgraph: subgraph["nodes"].append(subgraph["nodes"][0]),
             "two nodes have the id 3 in subgraph “Sampler”"),
            (lambda graph, subgraph: subgraph.update(nodes={"3": {}}),
             "subgraph “Sampler” has no list of nodes and links"),
            (lambda graph, subgraph: subgraph.update(links=[[1, 2]]), "a link is not [id"),
            (lambda graph, subgraph: subgraph.update(inputs=[{"type": "MODEL"}]),
             "the inputs of subgraph “Sampler” are not a list of named slots"),
            (lambda graph, subgraph: subgraph.pop("id"), "a subgraph definition has no id"),
            (lambda graph, subgraph: graph.update(definitions={"subgraphs": {}}),
             "its subgraph definitions are not a list"),
        ]
        for change, message in cases:
            with self.subTest(message=message):
                self.assert_refused(self.changed(change), message)

    def test_a_link_loop_through_a_subgraph_ends(self):
        # An input passed straight to the output, and the output linked back to the input.
        def loop(graph, subgraph):
            subgraph["links"][6] = link(10, -10, 0, -20, 0, "MODEL")
            graph["links"][2] = [3, 20, 0, 20, 0, "MODEL"]
            graph["nodes"][-1]["outputs"][0]["links"] = [3, 10]

        self.assert_refused(self.changed(loop), "The ComfyUI workflow's links loop through "
                                                f"node 20 ({SAMPLER_ID})")

    def test_subgraphs_nested_too_deep(self):
        depth = MAX_LINK_DEPTH + 5
        ids = [f"00000000-0000-4000-8000-{index:012d}" for index in range(depth)]
        definitions = [
            definition(ids[index], f"Level {index}",
                       [node(1, ids[index + 1], widgets=[])] if index + 1 < depth else [],
                       [], inputs=[], outputs=[])
            for index in range(depth)
        ]
        graph = with_subgraphs(workflow([node(1, ids[0], widgets=[])], []), *definitions)
        self.assert_refused(graph, f"nests subgraphs more than {MAX_LINK_DEPTH} deep "
                                   "(node 1:1:1:")

    def test_subgraphs_that_expand_to_too_many_nodes(self):
        # Ten levels of four instances each: a million nodes, refused as the count passes.
        ids = [f"00000000-0000-4000-8000-{index:012d}" for index in range(11)]
        definitions = [
            definition(ids[index], f"Level {index}",
                       [node(number, ids[index + 1], widgets=[]) for number in range(4)]
                       if index < 10 else [node(1, "Note", widgets=["x"])],
                       [], inputs=[], outputs=[])
            for index in range(11)
        ]
        graph = with_subgraphs(workflow([node(1, ids[0], widgets=[])], []), *definitions)
        self.assert_refused(graph, f"The ComfyUI workflow has more than {MAX_NODES:,} nodes "
                                   "once its subgraphs are expanded")

    def test_a_subgraph_whose_definition_is_missing(self):
        graph = sampler_workflow()
        graph.pop("definitions")
        self.assert_refused(graph, "one of its nodes is a subgraph whose definition is "
                                   f"missing from the file (subgraph {SAMPLER_ID})")

    def test_a_group_node_is_named_with_what_to_do(self):
        graph = sampler_workflow()
        graph.pop("definitions")
        graph["nodes"][-1]["type"] = "workflow>Sampler"
        graph["extra"]["groupNodes"] = {"Sampler": {"nodes": [], "links": [], "external": []}}
        self.assert_refused(graph, "has a group node (workflow>Sampler), which is not read "
                                   "here: convert the group node back to nodes in ComfyUI")
