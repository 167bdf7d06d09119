"""Reading LoRA files: family, rank, trigger words and resolution from the header of files
in kohya's and diffusers/peft's layouts; refusals for everything that is not one."""

import pytest

from generation.loras.files import LoraFileError, read_lora_file
from tests.lora_builders import (
    checkpoint_bytes,
    corrupt_header_bytes,
    kohya_lora_bytes,
    kohya_metadata,
    peft_lora_bytes,
    pickle_bytes,
    torch_zip_bytes,
)


@pytest.fixture
def write(tmp_path):
    def write(data, name="style.safetensors"):
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return write


def test_kohya_sd15_metadata_gives_family_rank_words_and_resolution(write):
    info = read_lora_file(write(kohya_lora_bytes("sd15", metadata=kohya_metadata("sd15"))))
    assert info.layout == "kohya"
    assert (info.family, info.family_evidence) == ("sd15", "cross-attention width 768")
    assert info.rank == 8  # ss_network_dim
    assert info.alpha == 4.0
    # Summed over the dataset folders, most frequent first.
    assert info.trigger_words == ["watercolor", "painting", "ink wash", "1girl"]
    assert info.resolution == "512x512"
    assert info.base_model == "v1-5-pruned-emaonly.safetensors"
    assert info.title == "watercolor_style"
    assert info.metadata["ss_network_dim"] == "8"
    assert "ss_tag_frequency" not in info.metadata  # long dumps stay in the file


def test_kohya_sdxl_is_recognised_by_its_cross_attention_width(write):
    info = read_lora_file(write(kohya_lora_bytes("sdxl", rank=16, metadata=kohya_metadata(
        "sdxl", ss_network_dim="16"))))
    assert info.family == "sdxl"
    assert info.rank == 16
    assert info.resolution == "1024x1024"


def test_kohya_sdxl_text_encoder_only_is_recognised_by_its_two_encoders(write):
    data = kohya_lora_bytes("sdxl", rank=4)
    path = write(data)
    info = read_lora_file(path)
    assert info.family == "sdxl"
    # Without the UNet's cross-attention layers, the two text encoders still tell.
    from safetensors.numpy import load, save

    tensors = {k: v for k, v in load(data).items() if k.startswith("lora_te")}
    info = read_lora_file(write(save(tensors), "te-only.safetensors"))
    assert (info.family, info.family_evidence) == ("sdxl", "two text encoders")


def test_kohya_sd2_from_shapes(write):
    info = read_lora_file(write(kohya_lora_bytes("sd2", rank=32)))
    assert info.family == "sd2"
    assert info.rank == 32  # no metadata: from the lora_down shapes


@pytest.mark.parametrize("declared", ["9" * 5000, "99999999999"])
def test_a_declared_rank_no_column_holds_is_read_from_the_shapes(write, declared):
    # Past 4,300 digits int() refuses; past 9 the rank column (32-bit) would.
    info = read_lora_file(write(kohya_lora_bytes("sd15", metadata={"ss_network_dim": declared})))
    assert info.rank == 8


@pytest.mark.parametrize("family", ["sd15", "sd2", "sdxl"])
def test_peft_layout_family_and_rank_come_from_shapes(write, family):
    info = read_lora_file(write(peft_lora_bytes(family, rank=4)))
    assert info.layout == "diffusers"
    assert info.family == family
    assert info.family_is_certain
    assert info.rank == 4
    assert info.trigger_words == []
    assert info.resolution == ""


def test_metadata_alone_tells_the_family_when_shapes_dont(write):
    # Cross-attention width 32 (a tiny test model): only the metadata can tell.
    from tests.lora_builders import CROSS_DIM

    CROSS_DIM["tiny"] = 32
    try:
        data = peft_lora_bytes("tiny", metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    finally:
        del CROSS_DIM["tiny"]
    info = read_lora_file(write(data))
    assert (info.family, info.family_evidence) == ("sdxl", "metadata")
    assert not info.family_is_certain


def test_modelspec_trigger_phrase_and_resolution(write):
    metadata = {"modelspec.trigger_phrase": "zk style, ink", "modelspec.resolution": "768x512",
                "modelspec.title": "Zk Ink", "modelspec.architecture": "stable-diffusion-v1/lora"}
    info = read_lora_file(write(kohya_lora_bytes("sd15", metadata=metadata)))
    assert info.trigger_words == ["zk style", "ink"]
    assert info.resolution == "768x512"
    assert info.title == "Zk Ink"


def test_an_unknown_family_is_none(write):
    from tests.lora_builders import CROSS_DIM

    CROSS_DIM["tiny"] = 32
    try:
        info = read_lora_file(write(peft_lora_bytes("tiny")))
    finally:
        del CROSS_DIM["tiny"]
    assert info.family is None


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("style.ckpt", b"x", "pickle-based file (.ckpt)"),
        ("style.pt", b"x", "pickle-based file (.pt)"),
        ("style.bin", b"x", "pickle-based file (.bin)"),
        ("style.zip", b"x", "is not a .safetensors file"),
        ("style.safetensors", pickle_bytes(), "pickled PyTorch file"),
        ("style.safetensors", torch_zip_bytes(), "pickled PyTorch file"),
        ("style.safetensors", b"", "is empty"),
        ("style.safetensors", kohya_lora_bytes()[:-100], "is cut short"),
        ("style.safetensors", kohya_lora_bytes()[:20], "is cut short"),
        ("style.safetensors", corrupt_header_bytes(), "damaged header"),
        ("style.safetensors", b"\x10" + b"\x00" * 7 + b"[1, 2, 3, 4, 5, 6]", "damaged header"),
        ("style.safetensors", checkpoint_bytes(), "full model, not a LoRA"),
    ],
)
def test_refusals_say_why(write, name, data, message):
    with pytest.raises(LoraFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_lora_file(write(data, name))
