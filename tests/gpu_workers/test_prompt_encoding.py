"""A1111's prompt language in the engine (gpu_workers.prompt_encoding): weighted, long and
scheduled prompts condition the UNet as A1111 computes it, a plain prompt as diffusers does,
and a request's image is the same alone and in a batch of such prompts.

The references below are written out from A1111's sd_hijack_clip.py and sd_emphasis.py
("Original" emphasis): chunks of 75 tokens between start and end tokens, padded to 77,
encoded apart and joined; each token's hidden state times its weight, then the chunk batch
scaled back to its mean.
"""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from PIL import Image
from transformers import CLIPTokenizer

from gpu_workers.prompt_encoding import embedding_runs, encode_prompt
from gpu_workers.requests import ControlRef, IPAdapterRef
from gpu_workers.samplers import fresh_scheduler
from gpu_workers.tiny_models import build_tiny_controlnet, build_tiny_ip_adapter, build_tiny_sd15
from tests.gpu_workers.engine_runs import pixels, run_batch

CPU = torch.device("cpu")
LONG = " ".join(f"w{n % 10}" for n in range(60))  # "w" and the digit: 120 tokens, no comma


@pytest.fixture(scope="module")
def plain_sdxl(tiny_sdxl_model_dir):
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_model_dir, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def conditioning(pipe, prompt, *, steps=4, clip_skip=1):
    with torch.no_grad():
        return encode_prompt(pipe, prompt, steps=steps, clip_skip=clip_skip, device=CPU)


def chunk_ids(tokenizer, tokens):
    """A1111's 77 ids for up to 75 prompt tokens: start, tokens, end, padding."""
    padding = [tokenizer.pad_token_id] * (75 - len(tokens))
    return [tokenizer.bos_token_id, *tokens, tokenizer.eos_token_id, *padding]


def tokens_of(tokenizer, text):
    return tokenizer(text, add_special_tokens=False).input_ids


def emphasised(hidden, weights):
    """A1111's "Original" emphasis on a batch of one chunk (texts, 77, width)."""
    original_mean = hidden.mean()
    weighted = hidden * weights.unsqueeze(-1)
    return weighted * (original_mean / weighted.mean())


@torch.no_grad()
def test_a_plain_prompt_is_the_pipelines_encoding(plain_pipeline, plain_sdxl):
    sd = conditioning(plain_pipeline, "a cat on the mat").at(0)
    expected, _ = plain_pipeline.encode_prompt("a cat on the mat", CPU, 1, False)
    assert torch.equal(sd.embeds, expected) and sd.pooled is None

    sdxl = conditioning(plain_sdxl, "a cat on the mat").at(0)
    expected, _, pooled, _ = plain_sdxl.encode_prompt(
        "a cat on the mat", device=CPU, do_classifier_free_guidance=False
    )
    assert torch.equal(sdxl.embeds, expected) and torch.equal(sdxl.pooled, pooled)


@torch.no_grad()
def test_weights_scale_their_tokens_then_the_mean_is_restored(plain_pipeline):
    tokenizer = plain_pipeline.tokenizer
    a, dog, owl = (tokens_of(tokenizer, word) for word in ("a", "dog", "owl"))
    ids = torch.tensor([chunk_ids(tokenizer, a + dog + owl)])
    weights = torch.ones(1, 77)
    weights[0, 2:5] = 1.3  # "dog" after the start token and "a"
    weights[0, 5:8] = 1 / 1.1  # "owl"
    hidden = plain_pipeline.text_encoder(ids)[0]

    result = conditioning(plain_pipeline, "a (dog:1.3) [owl]").at(0).embeds

    torch.testing.assert_close(result, emphasised(hidden, weights))
    assert not torch.allclose(result, conditioning(plain_pipeline, "a dog owl").at(0).embeds)


@torch.no_grad()
def test_a_long_prompt_is_encoded_in_chunks_of_75_tokens(plain_pipeline):
    tokenizer = plain_pipeline.tokenizer
    tokens = tokens_of(tokenizer, LONG)
    assert len(tokens) == 120
    chunks = [tokens[:75], tokens[75:]]
    expected = torch.cat(
        [plain_pipeline.text_encoder(torch.tensor([chunk_ids(tokenizer, c)]))[0] for c in chunks],
        dim=1,
    )

    result = conditioning(plain_pipeline, LONG).at(0).embeds

    assert result.shape == (1, 154, plain_pipeline.text_encoder.config.hidden_size)
    assert torch.equal(result, expected)


@torch.no_grad()
def test_a_long_sdxl_prompt_uses_both_encoders_per_chunk(plain_sdxl):
    chunks_per_encoder = []
    pooled = None
    for tokenizer, encoder in (
        (plain_sdxl.tokenizer, plain_sdxl.text_encoder),
        (plain_sdxl.tokenizer_2, plain_sdxl.text_encoder_2),
    ):
        tokens = tokens_of(tokenizer, LONG)
        parts = []
        for chunk in (tokens[:75], tokens[75:]):
            output = encoder(torch.tensor([chunk_ids(tokenizer, chunk)]), output_hidden_states=True)
            parts.append(output.hidden_states[-2])  # SDXL's layer: the penultimate
            if pooled is None and output[0].ndim == 2:
                pooled = output[0]  # the second encoder's, of the first chunk (A1111's)
        chunks_per_encoder.append(torch.cat(parts, dim=1))
    expected = torch.cat(chunks_per_encoder, dim=-1)

    result = conditioning(plain_sdxl, LONG).at(0)

    assert result.embeds.shape[1] == 154
    assert torch.equal(result.embeds, expected)
    assert torch.equal(result.pooled, pooled)


@torch.no_grad()
def test_clip_skip_is_the_layer_before_through_the_final_norm(plain_pipeline):
    tokenizer, encoder = plain_pipeline.tokenizer, plain_pipeline.text_encoder
    ids = torch.tensor([chunk_ids(tokenizer, tokens_of(tokenizer, "a cat"))])
    hidden = encoder(ids, output_hidden_states=True).hidden_states[-2]
    final_layer_norm = getattr(encoder, "text_model", encoder).final_layer_norm

    result = conditioning(plain_pipeline, "a cat", clip_skip=2).at(0).embeds

    assert torch.equal(result, final_layer_norm(hidden))


@torch.no_grad()
def test_a_schedules_texts_share_one_emphasis_mean_as_a1111_encodes_them_together(
    plain_pipeline,
):
    """A1111 encodes every step's text of a prompt as one batch (an alternation's text once
    per step it is used) and restores the mean over that whole batch."""
    tokenizer = plain_pipeline.tokenizer
    schedule = ["(dog:1.3)", "owl", "(dog:1.3)"]  # "[(dog:1.3)|owl]" over 3 steps
    ids = torch.tensor(
        [chunk_ids(tokenizer, tokens_of(tokenizer, text.strip("():.13"))) for text in schedule]
    )
    weights = torch.ones(3, 77)
    weights[[0, 2], 1:4] = 1.3
    expected = emphasised(plain_pipeline.text_encoder(ids)[0], weights)

    result = conditioning(plain_pipeline, "[(dog:1.3)|owl]", steps=3)

    assert result.ends == (1, 2, 3)
    for step, row in ((0, 0), (1, 0), (2, 1), (3, 2)):
        torch.testing.assert_close(result.at(step).embeds, expected[row : row + 1])


@torch.no_grad()
def test_prompt_editing_switches_after_its_step(plain_pipeline):
    result = conditioning(plain_pipeline, "[a cat:the dog:2]", steps=4)

    cat = conditioning(plain_pipeline, "a cat").at(0).embeds
    dog = conditioning(plain_pipeline, "the dog").at(0).embeds
    assert [torch.equal(result.at(step).embeds, cat) for step in range(4)] == [1, 1, 1, 0]
    assert torch.equal(result.at(3).embeds, dog)


def test_a_textual_inversion_of_several_vectors_is_one_run(tiny_sd15):
    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_sd15, safety_checker=None, requires_safety_checker=False
    )
    pipe.load_textual_inversion(torch.randn(3, 32), token="mystyle")
    first = pipe.tokenizer.convert_tokens_to_ids("mystyle")

    assert embedding_runs(pipe.tokenizer) == {first: 3}
    assert embedding_runs(plain_pipeline_tokenizer(tiny_sd15)) == {}
    # 73 tokens, then the 3 vectors: all of them start the second chunk.
    result = conditioning(pipe, "x" * 73 + " (mystyle:1.2)").at(0).embeds
    assert result.shape[1] == 154
    assert torch.equal(result[:, :77], conditioning(pipe, "x" * 73).at(0).embeds)


def plain_pipeline_tokenizer(folder):
    return CLIPTokenizer.from_pretrained(folder / "tokenizer")


@pytest.mark.parametrize(
    ("sampler", "last_call_of_step_2"),
    # Heun's 4 steps are 7 model calls: 2 per step, 1 for the last.
    [(None, 2), ("Heun", 5)],
)
def test_an_edited_prompt_alone_is_the_pipeline_switching_prompts(
    make_engine, plain_pipeline, tiny_request, sampler, last_call_of_step_2
):
    """The pipeline with the prompt embeddings replaced after step 2 (counted in steps,
    not model calls), as A1111 does for `[a cat:the dog:2]`."""
    request = dataclasses.replace(tiny_request, prompt="[a cat:the dog:2]", sampler=sampler)
    pipe = StableDiffusionPipeline(
        **{**plain_pipeline.components, "scheduler": fresh_scheduler(plain_pipeline, sampler)},
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        cat, negative = pipe.encode_prompt("a cat", CPU, 1, True, "blurry")
        dog, _ = pipe.encode_prompt("the dog", CPU, 1, False)

    def switch(pipe, call, timestep, tensors):
        return {"prompt_embeds": torch.cat([negative, dog])} if call == last_call_of_step_2 else {}

    expected = pipe(
        prompt_embeds=cat,
        negative_prompt_embeds=negative,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance_scale,
        width=request.width,
        height=request.height,
        generator=torch.Generator("cpu").manual_seed(request.seed),
        callback_on_step_end=switch,
        callback_on_step_end_tensor_inputs=["prompt_embeds"],
    ).images[0]

    (result,) = run_batch(make_engine(max_batch=1, max_wait_ms=0), [request])

    assert np.array_equal(pixels(result), np.asarray(expected))


def prompt_language_requests(request):
    """Compatible requests whose prompts take every path: editing, alternation, weights,
    BREAK, a prompt of 2 chunks with a negative prompt of 1 (UNet rows of different
    lengths), a long negative prompt, no CFG."""
    return [
        dataclasses.replace(request, prompt="a [cat:dog:0.5] on the mat", seed=1),
        dataclasses.replace(request, prompt="[red|blue] car, (shiny:1.3)", seed=2),
        dataclasses.replace(request, prompt=LONG, negative_prompt="", seed=3),
        dataclasses.replace(request, prompt="a cat BREAK [[grass]]", negative_prompt=LONG, seed=4),
        dataclasses.replace(request, prompt="[the dog:2] (run)", guidance_scale=1.0, seed=5),
        request,
    ]


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_batched_equals_alone_with_the_prompt_language(
    make_engine, tiny_request, tiny_sdxl_model_dir, family
):
    request = tiny_request
    if family == "sdxl":
        request = dataclasses.replace(tiny_request, model_source=str(tiny_sdxl_model_dir))
    requests = prompt_language_requests(request)

    alone = run_batch(make_engine(max_batch=1, max_wait_ms=0), requests)
    batched = run_batch(make_engine(max_batch=len(requests), max_wait_ms=0), requests)

    assert [result.batch_size for result in batched] == [len(requests)] * len(requests)
    for batched_result, alone_result in zip(batched, alone, strict=True):
        assert np.array_equal(pixels(batched_result), pixels(alone_result))
    assert len({pixels(result).tobytes() for result in alone}) == len(requests)


@pytest.fixture(scope="module")
def feature_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {
        "control": build_tiny_controlnet(folder / "controlnet"),
        "ip_adapter": build_tiny_ip_adapter(folder / "ip-adapter"),
        "inpaint": build_tiny_sd15(folder / "inpaint", inpaint=True),
    }


def with_feature(request, feature, models, seed):
    """`request` with a ControlNet, an image prompt or an inpainting model's mask, its
    images drawn from `seed`."""
    noise = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    image = Image.fromarray(noise, "RGB")
    if feature == "control":
        control = ControlRef(model_source=str(models["control"]), image=image)
        return dataclasses.replace(request, control=control)
    if feature == "ip_adapter":
        adapter = IPAdapterRef(model_source=str(models["ip_adapter"]), image=image, scale=0.8)
        return dataclasses.replace(request, ip_adapter=adapter)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[8:40, 16:48] = 255
    return dataclasses.replace(
        request,
        model_source=str(models["inpaint"]),
        init_image=image,
        mask_image=Image.fromarray(mask, "L"),
        strength=1.0,
    )


@pytest.mark.parametrize("feature", ["control", "ip_adapter", "inpaint"])
def test_rows_of_different_lengths_keep_their_feature_inputs(
    make_engine, tiny_request, feature_models, feature
):
    """Rows split into model calls by prompt length take their own control image, image
    prompt or mask along."""
    requests = [
        with_feature(request, feature, feature_models, seed)
        for seed, request in enumerate(prompt_language_requests(tiny_request)[:4])
    ]

    alone = run_batch(make_engine(max_batch=1, max_wait_ms=0), requests)
    batched = run_batch(make_engine(max_batch=len(requests), max_wait_ms=0), requests)

    assert [result.batch_size for result in batched] == [len(requests)] * len(requests)
    for batched_result, alone_result in zip(batched, alone, strict=True):
        assert np.array_equal(pixels(batched_result), pixels(alone_result))


def test_the_schedule_changes_the_image(make_engine, tiny_request):
    edited = dataclasses.replace(tiny_request, prompt="[a cat on the mat:a dog:2]")
    results = run_batch(make_engine(max_wait_ms=0), [tiny_request, edited])

    assert not np.array_equal(pixels(results[0]), pixels(results[1]))


def test_a_hires_second_pass_continues_the_schedule(make_engine, tiny_request):
    """In a second pass, a fraction under 1 has passed (A1111 1.6+): "[a cat:the dog:0.5]"
    is "the dog" throughout."""
    gradient = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    second_pass = dataclasses.replace(
        tiny_request,
        prompt="[a cat:the dog:0.5]",
        init_image=Image.fromarray(gradient, "RGB"),
        strength=0.5,
        first_pass_steps=4,
    )
    expected = dataclasses.replace(second_pass, prompt="the dog")
    single_pass = dataclasses.replace(second_pass, first_pass_steps=None)

    results = run_batch(make_engine(max_wait_ms=0), [second_pass, expected, single_pass])

    assert np.array_equal(pixels(results[0]), pixels(results[1]))
    assert not np.array_equal(pixels(results[0]), pixels(results[2]))
    # Passes share a batch: each row has its own prompt schedule.
    assert [result.batch_size for result in results] == [3, 3, 3]


def test_editing_too_costly_to_parse_is_refused_at_submit(make_engine, tiny_request):
    engine = make_engine()
    request = dataclasses.replace(tiny_request, negative_prompt="(x) " * 40 + "[a:b:3]")

    with pytest.raises(ValueError, match="negative_prompt: The prompt uses prompt editing"):
        engine.submit(request)
