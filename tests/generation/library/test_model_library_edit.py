"""Adding and editing library models: site staff only; every source is checked and each
refusal names its field and says what to do."""

import json
import tempfile
from pathlib import Path

import numpy as np
from django.urls import reverse
from safetensors.numpy import save_file

from generation.models import DiffusionModel, ModelFamily, ModelKind, SourceKind
from studio.accounts.models import Role, User
from tests.base import StudioTestCase


def diffusers_folder(parent, name="sd15", class_name="StableDiffusionPipeline"):
    folder = Path(parent) / name
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    return folder


def checkpoint_file(parent, name="model.safetensors", text_encoder="cond_stage_model.transformer"):
    """A tiny file with a single-file SD checkpoint's tensor names."""
    path = Path(parent) / name
    tensors = {
        "model.diffusion_model.input_blocks.0.0.weight": np.zeros(1, dtype=np.float32),
        f"{text_encoder}.x": np.zeros(1, dtype=np.float32),
    }
    save_file(tensors, str(path))
    return path


class ModelLibraryEditTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.staff = User.objects.create_user("sam", "sam@example.org", cls.password, is_staff=True)

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.client.force_login(self.staff)
        self.create_url = reverse("model_create")
        self.edit_url = reverse("model_edit", args=[self.model.pk])

    def data(self, **overrides):
        return {
            "name": "SD 1.5",
            "kind": ModelKind.CHECKPOINT,
            "family": ModelFamily.SD15,
            "source_kind": SourceKind.HUB,
            "source": "runwayml/stable-diffusion-v1-5",
            "config_source": "",
            "description": "",
            "default_width": 512,
            "default_height": 512,
            "default_steps": 25,
            "default_guidance_scale": 7,
            "default_sampler": "",
            "min_role": Role.EDITOR,
            "is_enabled": "on",
            **overrides,
        }

    def assert_refused(self, field, message_part, **overrides):
        count = DiffusionModel.objects.count()
        response = self.client.post(self.create_url, self.data(**overrides))
        self.assertEqual(response.status_code, 422)
        errors = response.context["form"].errors
        self.assertIn(field, errors, errors)
        self.assertIn(message_part, " ".join(errors[field]))
        self.assertContains(response, "field-error", status_code=422)
        self.assertEqual(DiffusionModel.objects.count(), count)  # nothing saved

    # --- who may -------------------------------------------------------------------

    def test_only_site_staff_may_add_or_edit(self):
        for role, user in self.users_by_role().items():
            self.client.force_login(user)
            for url in (self.create_url, self.edit_url):
                with self.subTest(role=role, url=url):
                    self.assertEqual(self.client.get(url).status_code, 403)
                    self.assertEqual(self.client.post(url, self.data()).status_code, 403)
        self.assertFalse(DiffusionModel.objects.filter(name="SD 1.5").exists())

    def test_anonymous_is_sent_to_log_in(self):
        self.client.logout()
        for url in (self.create_url, self.edit_url):
            response = self.client.get(url)
            self.assertEqual(response.status_code, 302)
            self.assertTrue(response["Location"].startswith(reverse("login")))

    def test_editing_an_unknown_model_is_404(self):
        self.assertEqual(self.client.get(reverse("model_edit", args=[999999])).status_code, 404)

    # --- adding ----------------------------------------------------------------------

    def test_the_add_page_is_a_styled_form(self):
        response = self.client.get(self.create_url)
        self.assertContains(response, 'class="model-form')
        self.assertContains(response, "css/library.css")
        self.assertContains(response, 'class="field')

    def test_staff_add_a_hub_model_with_its_defaults(self):
        response = self.client.post(
            self.create_url,
            self.data(default_width=768, default_sampler="DPM++ 2M Karras", min_role="admin"),
        )
        self.assertRedirects(response, reverse("model_library"))
        model = DiffusionModel.objects.get(name="SD 1.5")
        self.assertEqual(model.source, "runwayml/stable-diffusion-v1-5")
        self.assertEqual((model.default_width, model.default_sampler), (768, "DPM++ 2M Karras"))
        self.assertEqual(model.min_role, Role.ADMIN)

    def test_staff_add_a_diffusers_folder(self):
        folder = diffusers_folder(self.tmp.name)
        self.client.post(
            self.create_url, self.data(source_kind=SourceKind.FOLDER, source=f"{folder}/")
        )
        model = DiffusionModel.objects.get(name="SD 1.5")
        self.assertEqual(model.source, str(folder))  # normalised
        self.assertEqual(model.source_kind, SourceKind.FOLDER)

    def test_staff_add_a_single_file_checkpoint_with_a_config(self):
        path = checkpoint_file(self.tmp.name)
        config = diffusers_folder(self.tmp.name, "config")
        self.client.post(
            self.create_url,
            self.data(source_kind=SourceKind.FILE, source=str(path), config_source=str(config)),
        )
        model = DiffusionModel.objects.get(name="SD 1.5")
        self.assertEqual((model.source, model.config_source), (str(path), str(config)))

    def test_controlnet_and_ip_adapter_entries(self):
        controlnet = Path(self.tmp.name) / "canny"
        controlnet.mkdir()
        (controlnet / "config.json").write_text("{}")
        self.client.post(
            self.create_url,
            self.data(name="Canny", kind=ModelKind.CONTROLNET, source_kind=SourceKind.FOLDER,
                      source=str(controlnet)),
        )
        adapter = self.ip_adapter_file()
        self.client.post(
            self.create_url,
            self.data(name="IP-Adapter", kind=ModelKind.IP_ADAPTER, source_kind=SourceKind.FILE,
                      source=str(adapter)),
        )
        kinds = dict(DiffusionModel.objects.values_list("name", "kind"))
        self.assertEqual(kinds["Canny"], ModelKind.CONTROLNET)
        self.assertEqual(kinds["IP-Adapter"], ModelKind.IP_ADAPTER)

    def ip_adapter_file(self, encoder=True, **tensors):
        adapter = Path(tempfile.mkdtemp(dir=self.tmp.name)) / "ip-adapter_sd15.safetensors"
        tensors = tensors or {"image_proj.proj.weight": 1, "ip_adapter.1.to_k_ip.weight": 1}
        save_file({name: np.zeros(size, dtype=np.float32) for name, size in tensors.items()},
                  str(adapter))
        if encoder:
            (adapter.parent / "image_encoder").mkdir(exist_ok=True)
            (adapter.parent / "image_encoder" / "config.json").write_text("{}")
        return adapter

    def test_ip_adapters_are_checked_as_the_workers_load_them(self):
        def refused(message, **fields):
            data = self.data(name="IP", kind=ModelKind.IP_ADAPTER, **fields)
            response = self.client.post(self.create_url, data)
            self.assertContains(response, message, status_code=422)

        refused("not an IP-Adapter: it has no ip_adapter",
                source_kind=SourceKind.FILE,
                source=str(self.ip_adapter_file(**{"image_proj.proj.weight": 1})))
        refused("needs its CLIP image encoder", source_kind=SourceKind.FILE,
                source=str(self.ip_adapter_file(encoder=False)))
        refused("registered as a local .safetensors file", source_kind=SourceKind.HUB,
                source="h94/IP-Adapter")
        folder = self.ip_adapter_file().parent
        save_file({"x": np.zeros(1, dtype=np.float32)}, str(folder / "b.safetensors"))
        refused("exactly one", source_kind=SourceKind.FOLDER, source=str(folder))
        self.assertFalse(DiffusionModel.objects.filter(kind=ModelKind.IP_ADAPTER).exists())

    def test_ip_adapters_are_checked_against_their_family(self):
        """h94's layout is SD's and SDXL's, XLabs' FLUX.1's, InstantX's SD 3.x's."""
        xlabs = self.ip_adapter_file(**{
            "ip_adapter_proj_model.proj.weight": 1,
            "double_blocks.0.processor.ip_adapter_double_stream_k_proj.weight": 1,
        })
        instantx = self.ip_adapter_file(**{
            "image_proj.time_embedding.linear_1.weight": 1,
            "ip_adapter.0.norm_ip.linear.weight": 1,
        })
        (instantx.parent / "image_encoder" / "preprocessor_config.json").write_text("{}")

        def post(name, family, adapter):
            return self.client.post(self.create_url, self.data(
                name=name, kind=ModelKind.IP_ADAPTER, family=family,
                source_kind=SourceKind.FILE, source=str(adapter),
            ))

        for family, adapter, message in (
            (ModelFamily.SD15, xlabs, "an IP-Adapter for FLUX.1 models (XLabs"),
            (ModelFamily.FLUX1, self.ip_adapter_file(), "for Stable Diffusion 1.x or"),
            (ModelFamily.SD3, xlabs, "an IP-Adapter for FLUX.1 models (XLabs"),
            (ModelFamily.SD3, self.ip_adapter_file(), "for Stable Diffusion 1.x or"),
            (ModelFamily.FLUX1, instantx, "an IP-Adapter for Stable Diffusion 3.x models"),
        ):
            with self.subTest(family=family):
                response = post("IP", family, adapter)
                self.assertContains(response, message, status_code=422)
                self.assertIn("family", response.context["form"].errors)
        self.assertFalse(DiffusionModel.objects.filter(kind=ModelKind.IP_ADAPTER).exists())
        post("XLabs", ModelFamily.FLUX1, xlabs)
        self.assertEqual(DiffusionModel.objects.get(name="XLabs").family, ModelFamily.FLUX1)
        post("InstantX", ModelFamily.SD3, instantx)
        self.assertEqual(DiffusionModel.objects.get(name="InstantX").family, ModelFamily.SD3)

    def test_an_sd3_ip_adapter_needs_its_siglip_image_processor(self):
        adapter = self.ip_adapter_file(**{
            "image_proj.time_embedding.linear_1.weight": 1,
            "ip_adapter.0.norm_ip.linear.weight": 1,
        })
        response = self.client.post(self.create_url, self.data(
            name="IP", kind=ModelKind.IP_ADAPTER, family=ModelFamily.SD3,
            source_kind=SourceKind.FILE, source=str(adapter),
        ))

        self.assertContains(response, "needs its SigLIP image encoder", status_code=422)
        self.assertFalse(DiffusionModel.objects.filter(kind=ModelKind.IP_ADAPTER).exists())

    # --- refusals -------------------------------------------------------------------

    def test_a_hub_id_must_look_like_owner_slash_name(self):
        for bad in ("stable-diffusion", "a/b/c", "owner/-name", "owner/na--me", "owner/name."):
            with self.subTest(source=bad):
                self.assert_refused("source", "write it as owner/name", source=bad)
        self.assert_refused(
            "source", "not a web address", source="https://huggingface.co/runwayml/sd"
        )

    def test_a_folder_must_exist_and_be_a_diffusers_folder(self):
        self.assert_refused(
            "source", "There is no folder at", source_kind=SourceKind.FOLDER,
            source=f"{self.tmp.name}/missing",
        )
        self.assert_refused(
            "source", "has no model_index.json", source_kind=SourceKind.FOLDER,
            source=self.tmp.name,
        )
        self.assert_refused(
            "source", "full path", source_kind=SourceKind.FOLDER, source="models/mine"
        )
        path = checkpoint_file(self.tmp.name)
        self.assert_refused(
            "source", "is a file, not a folder", source_kind=SourceKind.FOLDER, source=str(path)
        )

    def test_pickled_checkpoints_are_refused_without_being_opened(self):
        for suffix in (".ckpt", ".pt", ".bin"):
            path = Path(self.tmp.name) / f"model{suffix}"
            path.write_bytes(b"\x80\x04 a pickle")
            with self.subTest(suffix=suffix):
                self.assert_refused(
                    "source", "never loads pickles", source_kind=SourceKind.FILE,
                    source=str(path),
                )

    def test_a_single_file_must_exist_and_have_a_valid_header(self):
        self.assert_refused(
            "source", "There is no file at", source_kind=SourceKind.FILE,
            source=f"{self.tmp.name}/missing.safetensors",
        )
        broken = Path(self.tmp.name) / "broken.safetensors"
        broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
        self.assert_refused(
            "source", "not a valid .safetensors file", source_kind=SourceKind.FILE,
            source=str(broken),
        )
        self.assert_refused(
            "source", "not a .safetensors file", source_kind=SourceKind.FILE,
            source=f"{self.tmp.name}/model.gguf",
        )

    def test_a_lora_is_not_a_checkpoint(self):
        lora = Path(self.tmp.name) / "lora.safetensors"
        save_file({"lora_unet_x.alpha": np.zeros(1, dtype=np.float32)}, str(lora))
        self.assert_refused(
            "source", "not a full Stable Diffusion checkpoint", source_kind=SourceKind.FILE,
            source=str(lora),
        )

    def test_the_family_must_match_the_model(self):
        xl_file = checkpoint_file(self.tmp.name, "xl.safetensors", "conditioner.embedders.1.model")
        self.assert_refused(
            "family", "Stable Diffusion XL", source_kind=SourceKind.FILE, source=str(xl_file)
        )
        xl_folder = diffusers_folder(self.tmp.name, "xl", "StableDiffusionXLPipeline")
        self.assert_refused(
            "family", "This is an SDXL model", source_kind=SourceKind.FOLDER,
            source=str(xl_folder),
        )
        sd15 = diffusers_folder(self.tmp.name)
        self.assert_refused(
            "family", "not an SDXL model", family=ModelFamily.SDXL,
            source_kind=SourceKind.FOLDER, source=str(sd15),
        )

    def test_flux_and_sd3_name_their_family(self):
        flux_file = Path(self.tmp.name) / "flux1-dev.safetensors"
        save_file(
            {
                "double_blocks.0.img_attn.norm.key_norm.scale": np.zeros(1, dtype=np.float32),
                "single_blocks.0.linear1.weight": np.zeros(1, dtype=np.float32),
            },
            str(flux_file),
        )
        self.assert_refused(
            "family", "is a FLUX.1 checkpoint: set the family to “FLUX.1”",
            source_kind=SourceKind.FILE, source=str(flux_file),
        )
        sd35_file = Path(self.tmp.name) / "sd3.5_medium.safetensors"
        save_file(
            {
                "model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias":
                    np.zeros(1, dtype=np.float32),
            },
            str(sd35_file),
        )
        self.assert_refused(
            "family", "set the family to “Stable Diffusion 3.x”",
            source_kind=SourceKind.FILE, source=str(sd35_file),
        )
        flux_folder = diffusers_folder(self.tmp.name, "flux", "FluxPipeline")
        self.assert_refused(
            "family", "This is a FLUX.1 model (FluxPipeline)", source_kind=SourceKind.FOLDER,
            source=str(flux_folder),
        )
        sd3_folder = diffusers_folder(self.tmp.name, "sd3", "StableDiffusion3Pipeline")
        self.assert_refused(
            "family", "This is an SD 3.x model", family=ModelFamily.FLUX1,
            source_kind=SourceKind.FOLDER, source=str(sd3_folder),
        )
        self.assert_refused(
            "family", "not a FLUX.1 model", family=ModelFamily.FLUX1,
            source_kind=SourceKind.FOLDER, source=str(diffusers_folder(self.tmp.name)),
        )

        self.assert_refused(
            "config_source", "A single FLUX.1 file holds the transformer only",
            family=ModelFamily.FLUX1, source_kind=SourceKind.FILE, source=str(flux_file),
        )

        for family, source_kind, source, config in [
            (ModelFamily.FLUX1, SourceKind.FILE, flux_file, flux_folder),
            (ModelFamily.SD3, SourceKind.FILE, sd35_file, sd3_folder),
            (ModelFamily.FLUX1, SourceKind.FOLDER, flux_folder, ""),
            (ModelFamily.SD3, SourceKind.FOLDER, sd3_folder, ""),
        ]:
            response = self.client.post(
                self.create_url,
                self.data(name=source.name, family=family, source_kind=source_kind,
                          source=str(source), config_source=str(config)),
            )
            self.assertRedirects(response, reverse("model_library"))
            self.assertEqual(DiffusionModel.objects.get(name=source.name).family, family)

    def test_duplicates_are_refused(self):
        self.assert_refused("name", "already in the library", name="tiny-sd15")
        DiffusionModel.objects.create(name="Base", source="runwayml/stable-diffusion-v1-5")
        self.assert_refused("source", "already in the library as “Base”")
        folder = diffusers_folder(self.tmp.name)
        DiffusionModel.objects.create(name="Local", source=str(folder))
        self.assert_refused(  # the same folder, however it is written
            "source", "already in the library as “Local”", source_kind=SourceKind.FOLDER,
            source=f"{folder}/",
        )

    def test_defaults_are_checked(self):
        self.assert_refused("default_width", "multiple of 8", default_width=500)
        self.assert_refused("default_steps", "less than or equal to", default_steps=100000)
        self.assert_refused("default_guidance_scale", "less than or equal to 30",
                            default_guidance_scale=99)
        self.assert_refused("default_sampler", "Select a valid choice", default_sampler="Nope")
        self.assert_refused("min_role", "Select a valid choice", min_role="viewer")

    def test_a_diffusers_config_is_only_for_single_files(self):
        self.assert_refused(
            "config_source", "Only single-file checkpoints", config_source="owner/config"
        )
        path = checkpoint_file(self.tmp.name)
        self.assert_refused(
            "config_source", "not a diffusers folder", source_kind=SourceKind.FILE,
            source=str(path), config_source=self.tmp.name,
        )

    # --- editing --------------------------------------------------------------------

    def test_staff_edit_a_model(self):
        response = self.client.get(self.edit_url)
        self.assertContains(response, "Edit tiny-sd15")
        response = self.client.post(
            self.edit_url,
            self.data(name="tiny-sd15", source="owner/tiny-sd15", default_steps=12,
                      is_enabled=""),
        )
        self.assertRedirects(response, reverse("model_library"))
        self.model.refresh_from_db()
        self.assertEqual((self.model.default_steps, self.model.is_enabled), (12, False))

    def test_editing_keeps_the_name_and_source_free_for_itself(self):
        DiffusionModel.objects.filter(pk=self.model.pk).update(source="owner/tiny")
        response = self.client.post(
            self.edit_url, self.data(name="tiny-sd15", source="owner/tiny")
        )
        self.assertEqual(response.status_code, 302)

    def test_a_refused_edit_keeps_the_saved_name_in_the_title(self):
        response = self.client.post(self.edit_url, self.data(name="", source="nope"))
        self.assertEqual(response.status_code, 422)
        self.assertContains(response, "Edit tiny-sd15", status_code=422)
        self.model.refresh_from_db()
        self.assertEqual(self.model.name, "tiny-sd15")
