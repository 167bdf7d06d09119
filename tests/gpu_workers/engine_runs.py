"""What the engine tests share: requests run as one batch, and the pixels of the engine's
images and of plain diffusers' pipelines, compared bitwise."""

import json
import shutil
from contextlib import contextmanager

import numpy as np
import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline
from PIL import Image


def run_batch(engine, requests, **callbacks):
    """Queue `requests` on `engine` before it starts, so they form one batch; their results
    (a hung engine fails the test instead of stopping the run)."""
    futures = [engine.submit(request, **callbacks) for request in requests]
    engine.start()
    return [future.result(timeout=300) for future in futures]


@contextmanager
def batch_sizes_seen(module):
    """The batch size of every call of `module` (a UNet's sample, a transformer's
    hidden_states, a VAE decoder's latents), in order."""
    sizes = []

    def seen(_, args, kwargs):
        sizes.append((args[0] if args else kwargs["hidden_states"]).shape[0])

    handle = module.register_forward_pre_hook(seen, with_kwargs=True)
    try:
        yield sizes
    finally:
        handle.remove()


def pixels(result):
    return np.asarray(result.images[0])


def pipeline_pixels(pipe, request, **options):
    """What plain diffusers' `pipe` makes for `request`: its prompt, steps, guidance, size
    and seed; `options` for the rest (a negative prompt, source images, ...)."""
    pipe.set_progress_bar_config(disable=True)
    output = pipe(
        prompt=request.prompt,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance_scale,
        width=request.width,
        height=request.height,
        generator=torch.Generator("cpu").manual_seed(request.seed),
        **options,
    )
    return np.asarray(output.images[0])


def sd3_inpaint_pixels(pipe, request, **options):
    """What StableDiffusion3InpaintPipeline `pipe` makes for `request`, its latents decoded
    as StableDiffusion3Pipeline decodes them: the inpaint pipeline leaves out the VAE's shift
    factor, unlike every other SD3 pipeline and its own encoding (diffusers issue #13611,
    "Issue 1"), where the engine decodes as the others."""
    latents = torch.from_numpy(pipeline_pixels(pipe, request, output_type="latent", **options))
    vae = pipe.vae
    latents = latents[None] / vae.config.scaling_factor + vae.config.shift_factor
    with torch.no_grad():
        image = vae.decode(latents, return_dict=False)[0]
    return np.asarray(pipe.image_processor.postprocess(image, output_type="pil")[0])

def flow_txt2img_pixels(family, model_dir, request, scheduler_of=None):
    """What FluxPipeline ("flux") or StableDiffusion3Pipeline ("sd3") makes for `request`
    in fp32 (FLUX.1 reads no negative prompt); `scheduler_of(config)`: a scheduler in place
    of the model's."""
    pipeline_class = {"flux": FluxPipeline, "sd3": StableDiffusion3Pipeline}[family]
    pipe = pipeline_class.from_pretrained(model_dir, dtype=torch.float32)
    if scheduler_of is not None:
        pipe.scheduler = scheduler_of(pipe.scheduler.config)
    options = {"negative_prompt": request.negative_prompt} if family == "sd3" else {}
    return pipeline_pixels(pipe, request, **options)


def source_image(size=(64, 48)):
    """A picture with some structure: a gradient and a bright square."""
    width, height = size
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1)
    pixels[8:24, 16:40] = 250
    return Image.fromarray(pixels.astype(np.uint8))


def mask_image(box=(16, 16, 48, 40), size=(64, 48)):
    """White (redrawn) inside `box`, black (kept) around it."""
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


# Where a diffusers FLUX.1 folder keeps its transformer's weights.
TRANSFORMER_FILE = "transformer/diffusion_pytorch_model.safetensors"


def transformer_file(folder, path):
    """A FLUX.1 folder's transformer alone in one file at `path`, in diffusers' layout (as
    a user's single file of FLUX.1 Fill, Depth or Canny would be)."""
    shutil.copy(folder / TRANSFORMER_FILE, path)
    return path


def under_dev_configs(folder, copy):
    """A copy of a FLUX.1 variant's folder (Fill, Depth, Canny) at `copy`: its text encoders
    and VAE under FLUX.1 [dev]'s configs (FluxPipeline, a transformer of 64 channels in and
    out), as a user's FLUX.1 [dev] folder would be."""
    shutil.copytree(folder, copy)
    index = json.loads((copy / "model_index.json").read_text())
    (copy / "model_index.json").write_text(json.dumps({**index, "_class_name": "FluxPipeline"}))
    config_path = copy / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "in_channels": 64, "out_channels": None}))
    return copy
