"""The recipe (generation.recipe) through every adapter and back: JSON, the form's flat
values, the job row, the form posted to the studio, the worker's requests, the A1111
infotext and the studio's JSON spec. Every field of the recipe is walked: a field added to
the recipe and forgotten in one adapter fails here, unless that adapter is listed as not
carrying it, with the reason."""

import base64
import io
import typing
from unittest import mock

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image as PILImage
from pydantic import BaseModel

from generation.execution import generation_requests, hires_requests
from generation.loras.models import JobLora
from generation.loras.syntax import parse_lora_tags, prompt_without_lora_tags
from generation.models import DiffusionModel, GenerationJob, ModelFamily, ModelKind
from generation.parameters_import import parse_a1111_infotext, parse_studio_spec
from generation.parameters_import.a1111 import recipe_infotext
from generation.parameters_import.studio import recipe_spec
from generation.recipe import (
    ControlNet,
    Hires,
    ImageRef,
    IPAdapter,
    LoraUse,
    Outpaint,
    Recipe,
    RecipeInvalid,
    Variation,
)
from generation.styles.models import Style
from generation.wildcards.models import Wildcard
from gpu_workers.requests import GenerationResult
from gpu_workers.samplers import SAMPLERS
from tests.base import StudioTestCase, make_image, make_job
from tests.lora_builders import make_lora

Path = tuple[str, ...]


def part_class(annotation):
    """The recipe part an annotation holds (`Hires | None`, `tuple[LoraUse, ...]`), or None."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def leaves(model=Recipe, prefix=()):
    """Every field's path, parts walked into: ("hires", "scale"), ("loras", "weight")..."""
    for name, field in model.model_fields.items():
        part = part_class(field.annotation)
        if part is None:
            yield (*prefix, name), field
        else:
            yield from leaves(part, (*prefix, name))


def value_at(recipe, path):
    value = recipe
    for name in path:
        if value is None:
            return None
        if isinstance(value, tuple):  # the LoRA stack: one value per LoRA
            value = tuple(getattr(item, name) for item in value)
        else:
            value = getattr(value, name)
    return value


def png_data_url(size=(64, 64)):
    buffer = io.BytesIO()
    PILImage.new("L", size, 255).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def png_upload(name):
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 64), (10, 120, 200)).save(buffer, format="PNG")
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/png")


def stored_png(name):
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 64), (10, 120, 200)).save(buffer, format="PNG")
    return default_storage.save(f"uploads/{name}", ContentFile(buffer.getvalue()))


class RecipeTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.control_model = DiffusionModel.objects.create(
            name="canny-sd15", source="/models/canny", kind=ModelKind.CONTROLNET
        )
        cls.adapter = DiffusionModel.objects.create(
            name="ip-adapter-sd15", source="/models/ip-adapter", kind=ModelKind.IP_ADAPTER
        )
        cls.flux_model = DiffusionModel.objects.create(
            name="flux-dev", source="/models/flux-dev", family=ModelFamily.FLUX1
        )
        cls.ink = make_lora(cls.team, cls.owner, "ink")
        cls.paper = make_lora(cls.team, cls.owner, "paper")
        cls.image = make_image(make_job(cls.project, cls.editor, cls.model))
        Wildcard.objects.create(team=cls.team, name="when", values="at dusk")
        # Typed "__when__ <lora:paper:0.4>" with it, the sample's templates below.
        Style.objects.create(team=cls.team, name="Lighthouse", prompt="a {lighthouse} {prompt}",
                             negative_prompt="{fog}")
        cls.other_image = make_image(make_job(cls.project, cls.editor, cls.model))

    def setUp(self):
        self.upload = stored_png("source.png")
        self.mask = stored_png("mask.png")

    def samples(self):
        """Recipes that, together, set every field to something other than its default."""
        text = Recipe(
            model=self.model.pk,
            prompt="a lighthouse at dusk <lora:paper:0.4>",
            negative_prompt="fog",
            # Expanding to the prompts above, whatever the seed.
            template="a {lighthouse} __when__ <lora:paper:0.4>",
            negative_template="{fog}",
            styles=("Lighthouse",),
            steps=12,
            guidance_scale=5.5,
            width=128,
            height=192,
            seed=2**40 + 7,
            sampler="DPM++ 2M Karras",
            clip_skip=2,
            batch_size=2,
            hires=Hires(scale=1.5, steps=6, strength=0.45),
            control=ControlNet(
                model=self.control_model.pk, image=ImageRef(image=self.image.pk),
                low_threshold=50, high_threshold=150, scale=0.8,
            ),
            ip_adapter=IPAdapter(
                model=self.adapter.pk, image=ImageRef(upload=self.upload), scale=0.7
            ),
            variation=Variation(seed=99, strength=0.3),
            loras=(LoraUse(lora=self.ink.pk, weight=0.8),
                   LoraUse(lora=self.paper.pk, weight=0.4, in_prompt=True)),
            remix_of=self.other_image.pk,
        )
        inpaint = Recipe(
            model=self.model.pk, prompt="a red door", steps=10, seed=5,
            source=ImageRef(upload=self.upload), strength=0.6, mask=self.mask,
        )
        outpaint = Recipe(
            model=self.model.pk, prompt="more sea", steps=10, seed=6, width=64, height=64,
            source=ImageRef(image=self.image.pk),
            outpaint=Outpaint(left=8, right=16, top=24, bottom=32),
        )
        image = Recipe(
            model=self.model.pk, prompt="the same in ink", steps=10, seed=7,
            source=ImageRef(image=self.image.pk), strength=0.5,
            control=ControlNet(model=self.control_model.pk, image=ImageRef(upload=self.upload)),
            ip_adapter=IPAdapter(model=self.adapter.pk, image=ImageRef(image=self.image.pk)),
        )
        flow = Recipe(
            model=self.flux_model.pk, prompt="a lighthouse, long exposure", steps=8, seed=8,
            guidance_scale=3.5, width=256, height=256, shift=2.25,
        )
        return [text, inpaint, outpaint, image, flow]

    def job_of(self, recipe):
        job = GenerationJob.objects.create(
            project=self.project, created_by=self.editor, **recipe.job_fields()
        )
        loras = {lora.pk: lora for lora in (self.ink, self.paper)}
        JobLora.objects.bulk_create(
            JobLora(job=job, lora_id=use.lora, name=loras[use.lora].name,
                    sha256=loras[use.lora].sha256, weight=use.weight, position=position,
                    in_prompt=use.in_prompt)
            for position, use in enumerate(recipe.loras)
        )
        return GenerationJob.objects.get(pk=job.pk)

    def assert_carried(self, adapter, not_carried, round_trip):
        """Each sample, through `round_trip`, keeps every field but those `not_carried`
        (paths); each of those must be a field still."""
        paths = {path for path, _ in leaves()}
        self.assertLessEqual(set(not_carried), paths, f"{adapter}: stale exclusions")
        for sample in self.samples():
            back = round_trip(sample)
            for path in paths - set(not_carried):
                with self.subTest(adapter=adapter, field=".".join(path), mode=sample.mode):
                    self.assertEqual(value_at(back, path), value_at(sample, path))


class EveryFieldTestCase(RecipeTestCase):
    def test_the_samples_set_every_field(self):
        """So a new field makes this fail until the samples (and so the adapters) cover it."""
        samples = self.samples()
        for path, field in leaves():
            if path == ("version",):
                continue
            with self.subTest(field=".".join(path)):
                values = [value_at(sample, path) for sample in samples]
                self.assertTrue(
                    any(value not in (None, (), field.default) for value in values),
                    f"no sample sets {'.'.join(path)}",
                )


class AdapterTestCase(RecipeTestCase):
    def test_json(self):
        self.assert_carried(
            "json", [], lambda recipe: Recipe.validated(recipe.model_dump(mode="json"))
        )

    def test_flat_values(self):
        self.assert_carried("flat", [], lambda recipe: Recipe.from_flat(recipe.to_flat()))

    def test_job_row(self):
        self.assert_carried("job", [], lambda recipe: Recipe.from_job(self.job_of(recipe)))

    def test_form_initial_fills_the_form_again(self):
        """Without what a page can't put back in a form: uploads, and where it was remixed
        from (the remix link says)."""
        not_carried = [("source", "upload"), ("mask",), ("ip_adapter", "image", "upload"),
                       ("remix_of",), ("loras", "in_prompt"), ("template",),
                       ("negative_template",), ("styles",)]

        def round_trip(recipe):
            return self.refill(recipe, recipe.form_initial())

        self.assert_carried("form initial", not_carried, round_trip)

    def refill(self, recipe, initial):
        """The form's initial values, with what they leave out taken from `recipe`."""
        return Recipe.from_flat({
            **recipe.to_flat(),
            **initial,
            "loras": [*initial["loras"], *(use.model_dump() for use in recipe.loras
                                           if use.in_prompt)],
        })

    def test_the_studio_form(self):
        """Posted to the studio as a browser does (uploads as files, the mask as the
        painter's PNG), the job made holds the recipe; uploads get new storage names."""
        self.client.force_login(self.editor)
        url = reverse("job_create", args=[self.project.pk])
        not_carried = [("source", "upload"), ("mask",), ("ip_adapter", "image", "upload"),
                       ("control", "image", "upload")]

        def round_trip(recipe):
            data = {key: value for key, value in recipe.form_initial().items()
                    if value not in (None, "", False) and key != "loras"}
            # Typed with its variants and wildcards, the job gets their expansion; typed
            # without its styles' text, the job gets it with the styles picked.
            data["prompt"] = recipe.template or recipe.prompt
            data["negative_prompt"] = recipe.negative_template or recipe.negative_prompt
            if recipe.styles:
                data["styles"] = list(recipe.styles)
                data["prompt"] = data["prompt"].removeprefix("a {lighthouse} ")
                data["negative_prompt"] = ""
            data["remix_of"] = recipe.remix_of or ""
            picked = [use for use in recipe.loras if not use.in_prompt]
            data["lora"] = [use.lora for use in picked]
            data["lora_weight"] = [str(use.weight) for use in picked]
            if recipe.source and recipe.source.upload:
                data["source_upload"] = png_upload("source.png")
            if recipe.mask:
                data["mask_data"] = png_data_url()
            if recipe.ip_adapter and recipe.ip_adapter.image.upload:
                data["ip_adapter_upload"] = png_upload("prompt.png")
            if recipe.control and recipe.control.image.upload:
                data["control_upload"] = png_upload("edges.png")
            with mock.patch("generation.services.enqueue_generation"):
                response = self.client.post(url, data, headers={"HX-Request": "true"})
            self.assertEqual(response.status_code, 200, response.content[:2000])
            back = GenerationJob.objects.latest("pk").recipe()
            for path in not_carried:  # stored anew: present, under a new name
                self.assertEqual(bool(value_at(back, path)), bool(value_at(recipe, path)))
            return back

        self.assert_carried("studio form", not_carried, round_trip)

    def test_worker_requests(self):
        """What the worker runs: one request per image of the batch, the hires pass second.
        Library models and images go as sources and pixels; lineage stays in the studio."""
        not_carried = [("model",), ("template",), ("negative_template",), ("styles",),
                       ("source", "image"),
                       ("source", "upload"), ("mask",), ("control", "model"),
                       ("control", "image", "image"),
                       ("control", "image", "upload"), ("ip_adapter", "model"),
                       ("ip_adapter", "image", "image"), ("ip_adapter", "image", "upload"),
                       ("loras", "lora"), ("loras", "in_prompt"), ("remix_of",)]

        def round_trip(recipe):
            job = self.job_of(recipe)
            requests = generation_requests(job)
            first = requests[0]
            self.assertEqual(first.model_source, job.model.source)
            self.assertEqual(first.init_image is not None, recipe.source is not None)
            self.assertEqual(first.mask_image is not None, recipe.mode != "txt2img"
                             and recipe.mode != "img2img")
            hires = None
            if recipe.hires:
                results = [mock.Mock(images=[PILImage.new("RGB", (first.width, first.height))])
                           for _ in requests]
                second = hires_requests(job, requests, results)[0]
                self.assertEqual(second.first_pass_steps, recipe.steps)
                hires = Hires(scale=recipe.hires.scale, steps=second.steps,
                              strength=second.strength)
            width, height = recipe.width, recipe.height
            if recipe.outpaint:
                o = recipe.outpaint
                width, height = first.width - o.left - o.right, first.height - o.top - o.bottom
            return Recipe.model_construct(
                **{
                    **dict(recipe),
                    "prompt": recipe.prompt if first.prompt == prompt_without_lora_tags(
                        recipe.prompt) else first.prompt,
                    "negative_prompt": first.negative_prompt,
                    "steps": first.steps,
                    "guidance_scale": first.guidance_scale,
                    "width": width,
                    "height": height,
                    "seed": first.seed,
                    "sampler": first.sampler or "",  # None: the model's default
                    "shift": first.shift,
                    "clip_skip": first.clip_skip,
                    "batch_size": len(requests),
                    "strength": first.strength if recipe.mode != "outpaint" else recipe.strength,
                    "outpaint": recipe.outpaint,
                    "hires": hires,
                    "control": first.control and ControlNet.model_construct(
                        model=None,
                        image=ImageRef.model_construct(image=recipe.control.image.image),
                        low_threshold=first.control.low_threshold,
                        high_threshold=first.control.high_threshold,
                        scale=first.control.conditioning_scale,
                    ),
                    "ip_adapter": first.ip_adapter and IPAdapter.model_construct(
                        model=None, image=None, scale=first.ip_adapter.scale,
                    ),
                    "variation": recipe.variation and Variation.model_construct(
                        seed=first.variation_seed, strength=first.variation_strength
                    ),
                    "loras": tuple(LoraUse.model_construct(lora=None, weight=ref.weight)
                                   for ref in first.loras),
                }
            )

        self.assert_carried("worker", not_carried, round_trip)

    def test_a1111_infotext(self):
        """What A1111's format has no field for: library ids, uploads, lineage; the
        ControlNet and IP-Adapter units name their models and are for the user to pick
        again; LoRAs go as <lora:name:weight> tags. Styles are in the prompt, not named:
        A1111 writes no style names either (it infers them from the prompt when pasting)."""
        not_carried = [("source", "image"), ("source", "upload"), ("mask",), ("strength",),
                       ("batch_size",), ("outpaint", "left"), ("outpaint", "right"),
                       ("outpaint", "top"), ("outpaint", "bottom"),
                       ("control", "model"), ("control", "image", "image"),
                       ("control", "image", "upload"), ("control", "low_threshold"),
                       ("control", "high_threshold"), ("control", "scale"),
                       ("ip_adapter", "model"), ("ip_adapter", "image", "image"),
                       ("ip_adapter", "image", "upload"), ("ip_adapter", "scale"),
                       ("loras", "lora"), ("loras", "in_prompt"), ("remix_of",),
                       ("styles",)]

        def round_trip(recipe):
            job = self.job_of(recipe)
            sampler = SAMPLERS[recipe.sampler or "Euler"]
            text = recipe_infotext(
                job, seed=recipe.seed, sampler=sampler.infotext_name,
                schedule_type=sampler.schedule_type,
                variation_seed=recipe.variation and recipe.variation.seed,
            )
            imported = parse_a1111_infotext(text)
            self.assertEqual(imported.model_name, job.model.name)
            # What ran is written: the model's default sampler by its name (Euler here).
            return self.imported_recipe(recipe, imported, ran_sampler=sampler.name)

        self.assert_carried("A1111 infotext", not_carried, round_trip)

    def test_studio_spec(self):
        """The studio's JSON chunk: as the infotext, plus the ControlNet's settings and the
        image prompt's scale; library models go by name, for the user to pick again."""
        not_carried = [("source", "image"), ("source", "upload"), ("mask",), ("strength",),
                       ("outpaint", "left"), ("outpaint", "right"), ("outpaint", "top"),
                       ("outpaint", "bottom"), ("control", "model"),
                       ("control", "image", "image"), ("control", "image", "upload"),
                       ("ip_adapter", "model"), ("ip_adapter", "image", "image"),
                       ("ip_adapter", "image", "upload"), ("loras", "lora"),
                       ("loras", "in_prompt"), ("remix_of",), ("styles",)]

        def round_trip(recipe):
            job = self.job_of(recipe)
            sampler = SAMPLERS[recipe.sampler or "Euler"]
            result = GenerationResult(
                images=[], seed=recipe.seed, sampler=sampler.infotext_name,
                schedule_type=sampler.schedule_type, scheduler_class=sampler.scheduler_class,
                scheduler_config={}, elapsed_s=1.0,
                variation_seed=recipe.variation and recipe.variation.seed,
            )
            imported = parse_studio_spec(recipe_spec(job, result))
            # The spec keeps "the model's default" (null) as it was asked for.
            return self.imported_recipe(recipe, imported, ran_sampler=recipe.sampler)

        self.assert_carried("studio spec", not_carried, round_trip)

    def imported_recipe(self, recipe, imported, *, ran_sampler):
        """An importer's values as a recipe, what it can't hold taken from `recipe` (the
        carried fields are compared): LoRAs come back as tags in the prompt."""
        values = imported.values
        tags = parse_lora_tags(values["prompt"])
        self.assertEqual(sorted((tag.name, tag.weight) for tag in tags),
                         sorted(self.lora_names(recipe)))
        words = " ".join(prompt_without_lora_tags(values["prompt"]).split())
        self.assertEqual(values["sampler"], ran_sampler)
        values["sampler"] = recipe.sampler
        if recipe.outpaint:  # the image's size: the canvas
            self.assertEqual((values["width"], values["height"]), recipe.canvas_size())
            values["width"], values["height"] = recipe.width, recipe.height
        kept = recipe.model_dump()
        return Recipe.model_construct(**{
            **dict(recipe),
            **{key: values[key] for key in kept if key in values and key not in (
                "prompt", "loras", "source", "control", "ip_adapter", "variation", "hires",
                "outpaint")},
            "prompt": recipe.prompt
            if words == " ".join(prompt_without_lora_tags(recipe.prompt).split())
            else values["prompt"],
            # Only what the format holds: a template left out is no template.
            "template": values.get("template", ""),
            "negative_template": values.get("negative_template", ""),
            "styles": tuple(values.get("styles", ())),
            "hires": Hires(scale=values["hires_scale"], steps=values.get("hires_steps", 0),
                           strength=values["hires_strength"]) if values.get("hires_fix")
            else None,
            "variation": Variation(seed=values.get("variation_seed"),
                                   strength=values["variation_strength"])
            if values.get("variation_strength") else None,
            "control": recipe.control and ControlNet.model_construct(
                **{**dict(recipe.control), **{
                    key.removeprefix("control_"): values[key] for key in (
                        "control_low_threshold", "control_high_threshold", "control_scale")
                    if key in values}}
            ),
            "ip_adapter": recipe.ip_adapter and IPAdapter.model_construct(
                **{**dict(recipe.ip_adapter), "scale": values.get(
                    "ip_adapter_scale", recipe.ip_adapter.scale)}
            ),
            "loras": tuple(LoraUse.model_construct(lora=use.lora, weight=weight,
                                                   in_prompt=use.in_prompt)
                           for use, (_, weight) in zip(
                               recipe.loras, self.lora_names(recipe), strict=True)),
        })

    def lora_names(self, recipe):
        names = {self.ink.pk: "ink", self.paper.pk: "paper"}
        return [(names[use.lora], use.weight) for use in recipe.loras]


class ValidationTestCase(RecipeTestCase):
    def test_errors_name_the_fields_as_the_form_does(self):
        data = self.samples()[0].model_dump(mode="json")
        data["steps"] = 0
        data["hires"]["scale"] = 9
        data["control"]["image"] = {"image": 1, "upload": "x.png"}
        with self.assertRaises(RecipeInvalid) as raised:
            Recipe.validated(data)
        self.assertEqual(set(raised.exception.errors),
                         {"steps", "hires_scale", "control_image"})

    def test_rules_between_fields_are_the_forms(self):
        data = self.samples()[1].model_dump(mode="json")
        data["variation"] = {"seed": 1, "strength": 0.5}
        with self.assertRaisesMessage(RecipeInvalid,
                                      "Variations are for text to image: set it to 0."):
            Recipe.validated(data)

    def test_unknown_fields_and_versions_are_refused(self):
        data = self.samples()[2].model_dump(mode="json")
        with self.assertRaises(RecipeInvalid) as raised:
            Recipe.validated({**data, "cfg": 7})
        self.assertIn("cfg", raised.exception.errors)
        with self.assertRaises(RecipeInvalid) as raised:
            Recipe.validated({**data, "version": 2})
        self.assertIn("version", raised.exception.errors)


class JobRowTestCase(RecipeTestCase):
    def test_a_row_queued_under_older_limits_still_has_its_recipe(self):
        job = make_job(self.project, self.editor, self.model, width=48, height=40, steps=500)
        recipe = job.recipe()
        self.assertEqual((recipe.width, recipe.height, recipe.steps), (48, 40, 500))

    def test_a_deleted_source_keeps_the_jobs_mode(self):
        source = make_image(make_job(self.project, self.editor, self.model))
        job = make_job(self.project, self.editor, self.model, mode="img2img",
                       source_image=source, strength=0.35)
        source.delete()
        job.refresh_from_db()
        recipe = job.recipe()
        self.assertEqual(recipe.mode, "img2img")
        self.assertEqual((recipe.source.image, recipe.source.upload), (None, ""))
        self.assertIsNone(recipe.form_initial()["source_image"])
        self.assertEqual(recipe.strength, 0.35)
