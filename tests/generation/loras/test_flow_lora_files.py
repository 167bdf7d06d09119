"""FLUX.1 and SD 3.x LoRAs in the library (issue #17): the family told from the tensors in
each layout users download (kohya / sd-scripts, ai-toolkit and diffusers/peft, XLabs for
FLUX.1; diffusers/peft for SD 3.x), kohya's SD 3.x layout refused since no worker can read
it, uploads marked with their family, and stacks on a model of another family refused."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from generation.loras.files import LoraFileError, read_lora_file
from generation.loras.models import Lora
from generation.loras.services import LoraStackError, lora_stack
from generation.models import DiffusionModel
from tests.base import StudioTestCase
from tests.lora_builders import (
    flux2_lora_bytes,
    flux_kohya_lora_bytes,
    flux_peft_lora_bytes,
    flux_xlabs_lora_bytes,
    kohya_lora_bytes,
    make_lora,
    sd3_kohya_lora_bytes,
    sd3_peft_lora_bytes,
)


@pytest.fixture
def write(tmp_path):
    def write(data, name="style.safetensors"):
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return write


@pytest.mark.parametrize(
    ("data", "layout", "family", "evidence"),
    [
        (flux_kohya_lora_bytes(), "kohya", "flux1", "FLUX.1's double-stream blocks"),
        # Its CLIP-L layers (lora_te1_) don't make it an SDXL LoRA.
        (flux_kohya_lora_bytes(tiny=True), "kohya", "flux1", "FLUX.1's double-stream blocks"),
        (
            flux_kohya_lora_bytes(comfyui=True),
            "kohya",
            "flux1",
            "FLUX.1's double-stream blocks",
        ),
        (flux_peft_lora_bytes(), "diffusers", "flux1", "FLUX.1's single-stream blocks"),
        (flux_peft_lora_bytes(single_blocks=False), "diffusers", "flux1", "transformer width 3072"),
        (flux_xlabs_lora_bytes(), "xlabs", "flux1", "FLUX.1's double-stream blocks"),
        (sd3_peft_lora_bytes(), "diffusers", "sd3", "transformer width 1536"),
        (sd3_peft_lora_bytes(width=2432), "diffusers", "sd3", "transformer width 2432"),
        (
            sd3_peft_lora_bytes(tiny=True, second_attention=True),
            "diffusers",
            "sd3",
            "SD 3.5's second attention in its joint blocks",
        ),
        (
            sd3_peft_lora_bytes(tiny=True, text_encoders=True),
            "diffusers",
            "sd3",
            "joint transformer blocks with two CLIP text encoders",
        ),
    ],
    ids=[
        "flux-kohya",
        "flux-kohya-tiny",
        "flux-comfyui",
        "flux-peft",
        "flux-peft-double-blocks",
        "flux-xlabs",
        "sd3-medium",
        "sd35-large",
        "sd35-medium-attn2",
        "sd3-text-encoders",
    ],
)
def test_flow_loras_are_recognised_from_their_tensors(write, data, layout, family, evidence):
    info = read_lora_file(write(data))
    assert (info.layout, info.family, info.family_evidence) == (layout, family, evidence)
    assert info.family_is_certain
    assert info.rank == 4


def test_a_transformer_lora_of_an_unknown_width_leaves_the_family_open(write):
    # Joint / double blocks are named alike in both families; the tiny width is neither's.
    info = read_lora_file(write(sd3_peft_lora_bytes(tiny=True)))
    assert (info.family, info.family_evidence) == (None, "")


@pytest.mark.parametrize(
    ("metadata", "family"),
    [
        ({"ss_base_model_version": "flux1"}, "flux1"),
        ({"modelspec.architecture": "flux-1-dev/lora"}, "flux1"),
        ({"ss_sd_model_name": "flux1-dev.safetensors"}, "flux1"),
        ({"ss_base_model_version": "sd3"}, "sd3"),
        ({"modelspec.architecture": "stable-diffusion-v3.5-large/lora"}, "sd3"),
    ],
)
def test_metadata_tells_a_flow_family_the_tensors_dont(write, metadata, family):
    data = flux_peft_lora_bytes(tiny=True, single_blocks=False, metadata=metadata)
    info = read_lora_file(write(data))
    assert (info.family, info.family_evidence) == (family, "metadata")
    assert not info.family_is_certain


def test_kohyas_sd3_layout_is_refused_saying_which_layout_works(write):
    with pytest.raises(
        LoraFileError,
        match=r"Stable Diffusion 3\.x LoRA in kohya's / "
        r"Stability's layout \(joint_blocks\)",
    ):
        read_lora_file(write(sd3_kohya_lora_bytes(), "sd3-kohya.safetensors"))


@pytest.mark.parametrize(
    ("data", "evidence"),
    [
        (flux2_lora_bytes(), "FLUX.2's MLP widths"),
        (flux2_lora_bytes(diffusers=True), "FLUX.2's layer names"),
    ],
    ids=["bfl-layout", "diffusers-layout"],
)
def test_a_flux2_lora_is_refused_not_taken_for_flux1(write, data, evidence):
    # FLUX.2 [klein] 4B is as wide as FLUX.1, and Black Forest Labs' layout names its blocks
    # alike: the MLPs' widths tell them apart.
    with pytest.raises(LoraFileError, match=rf"is a FLUX\.2 LoRA \({evidence}\)"):
        read_lora_file(write(data))


class FlowLoraLibraryTests(StudioTestCase):
    def setUp(self):
        self.client.force_login(self.editor)

    def upload(self, data, **fields):
        post = {
            "file": SimpleUploadedFile("style.safetensors", data),
            "default_weight": "1",
            **fields,
        }
        return self.client.post(reverse("lora_upload", args=[self.team.pk]), post)

    def test_a_flux_lora_is_stored_marked_flux(self):
        self.upload(flux_kohya_lora_bytes())
        lora = Lora.objects.get()
        self.assertEqual((lora.family, lora.layout), ("flux1", "kohya"))
        self.assertEqual(lora.get_family_display(), "FLUX.1")

    def test_an_sd3_lora_is_stored_marked_sd3(self):
        self.upload(sd3_peft_lora_bytes())
        self.assertEqual(Lora.objects.get().family, "sd3")

    def test_a_family_that_contradicts_a_flux_file_is_refused(self):
        response = self.upload(flux_xlabs_lora_bytes(), family="sdxl")
        self.assertEqual(response.status_code, 422)
        self.assertIn(
            "made for FLUX.1 (FLUX.1's double-stream blocks), not Stable Diffusion XL",
            " ".join(response.context["form"].errors["family"]),
        )
        self.assertFalse(Lora.objects.exists())

    def test_a_lora_on_a_model_of_another_family_is_refused_naming_both(self):
        flux_model = DiffusionModel.objects.create(name="flux-dev", source="/m/f", family="flux1")
        sd3_model = DiffusionModel.objects.create(name="sd35", source="/m/s", family="sd3")
        flux = make_lora(
            self.team, self.editor, "flux-style", family="flux1", data=flux_peft_lora_bytes()
        )
        sd3 = make_lora(
            self.team, self.editor, "sd3-style", family="sd3", data=sd3_peft_lora_bytes()
        )
        xl = make_lora(
            self.team, self.editor, "xl-style", family="sdxl", data=kohya_lora_bytes("sdxl")
        )
        refusals = [
            (
                flux,
                self.model,
                "LoRA “flux-style” is made for FLUX.1, but tiny-sd15 is a "
                "Stable Diffusion 1.x model",
            ),
            (
                sd3,
                flux_model,
                "LoRA “sd3-style” is made for Stable Diffusion 3.x, but flux-dev is a FLUX.1 model",
            ),
            (
                xl,
                sd3_model,
                "LoRA “xl-style” is made for Stable Diffusion XL, but sd35 is a "
                "Stable Diffusion 3.x model",
            ),
        ]
        for lora, model, message in refusals:
            with self.subTest(lora=lora.name), self.assertRaisesMessage(LoraStackError, message):
                lora_stack(team=self.team, model=model, picked=[(lora.pk, None)], prompt="")

        for lora, model in ((flux, flux_model), (sd3, sd3_model)):
            stack = lora_stack(team=self.team, model=model, picked=[(lora.pk, 0.8)], prompt="")
            self.assertEqual([(choice.lora, choice.weight) for choice in stack], [(lora, 0.8)])
