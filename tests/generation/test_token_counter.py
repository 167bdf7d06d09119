"""The studio's live token counter: A1111's "42/75" for a prompt box, counted on the web node
with the model's own tokenizer files and the worker's chunking, styles applied and <lora:…>
tags left out; "token count unavailable" where the tokenizer can't be read; torch-free."""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

from django.test import override_settings
from django.urls import reverse

from generation.loras.embeddings.models import Embedding
from generation.models import DiffusionModel, ModelFamily, SourceKind, TeamModelSetting
from generation.styles.models import Style
from generation.token_counts import TokenCount, token_count, tokenizer_at
from gpu_workers.prompt_syntax import token_chunks
from gpu_workers.tiny_models import tiny_clip_tokenizer, tiny_t5_tokenizer
from tests.base import StudioTestCase

# 100 "wN" words: a token for each letter, digit and space in the tiny vocabulary, 3 chunks.
LONG = " ".join(f"w{n % 10}" for n in range(100))


class TokenCounterTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.folder = Path(tempfile.mkdtemp(prefix="token-counter-"))
        cls.tokenizer = tiny_clip_tokenizer(cls.folder / "tokenizer")
        cls.model.source_kind, cls.model.source = SourceKind.FOLDER, str(cls.folder)
        cls.model.save()
        Style.objects.create(team=cls.team, name="Grain", prompt="{prompt}, film grain",
                             negative_prompt="smooth")

    def setUp(self):
        self.client.force_login(self.editor)
        self.url = reverse("token_count", args=[self.project.pk])

    def count(self, text, **data):
        return self.client.post(self.url, {"field": "prompt", "prompt": text,
                                           "model": self.model.pk, "steps": 20, **data},
                                headers={"HX-Request": "true"})

    def expected(self, text):
        chunks = token_chunks(text, self.tokenizer)
        tokens = 75 * (len(chunks) - 1) + chunks[-1]
        return f"{tokens}/{-(-max(tokens, 1) // 75) * 75}"

    def test_a_short_prompt_counts_its_tokens_of_75(self):
        response = self.count("a cat")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, ">2/75<")  # "a" and "cat"
        self.assertEqual(self.expected("a cat"), "2/75")
        self.assertContains(self.count(""), ">0/75<")

    def test_a_long_prompt_counts_its_chunks_as_a1111(self):
        """75 for each full chunk plus the last one's tokens, over the chunks' room."""
        chunks = token_chunks(LONG, self.tokenizer)
        self.assertEqual([chunks[0], chunks[1]], [75, 75])
        self.assertContains(self.count(LONG), f">{150 + chunks[2]}/225<")
        # BREAK closes a chunk early: it still counts as 75.
        self.assertContains(self.count("a BREAK cat"), ">76/150<")

    def test_lora_tags_are_left_out_and_styles_are_in(self):
        self.assertContains(self.count("a cat <lora:ink:0.8>"), ">2/75<")
        styled = self.count("a cat", styles=["Grain"])
        self.assertContains(styled, f">{self.expected('a cat, film grain').split('/')[0]}/75<")
        negative = self.client.post(self.url, {"field": "negative_prompt",
                                               "negative_prompt": "dull", "model": self.model.pk,
                                               "styles": ["Grain"]})
        self.assertContains(negative, f">{self.expected('dull, smooth')}<")

    def test_an_embedding_counts_its_vectors(self):
        """As the worker loads it: one token per vector, for the model's family only."""
        for team, family, name in [(self.team, self.model.family, "inkwash"),
                                   (self.team, "sdxl", "bigink"),
                                   (self.other_team, self.model.family, "theirink")]:
            Embedding.objects.create(team=team, name=name, file=f"embeddings/{name}.safetensors",
                                     sha256=name.ljust(64, "0"), size_bytes=1, family=family,
                                     layout="a1111", vectors=8)
        self.assertContains(self.count("a cat, (inkwash:1.2)"), f">{3 + 8}/75<")
        for name in ("bigink", "theirink"):
            with self.subTest(name=name):
                self.assertContains(self.count(f"a cat, {name}"),
                                    f">{self.expected(f'a cat, {name}')}<")

    def test_without_a_readable_tokenizer_it_says_so(self):
        for kind, source in [(SourceKind.HUB, "someone/not-in-the-cache"),
                             (SourceKind.FILE, "/models/checkpoint.safetensors"),
                             (SourceKind.FOLDER, "/nowhere/at/all")]:
            with self.subTest(source=source):
                DiffusionModel.objects.filter(pk=self.model.pk).update(
                    source_kind=kind, source=source)
                self.assertContains(self.count("a cat"), ">token count unavailable<")
        # A single file's diffusers config holds the tokenizer.
        DiffusionModel.objects.filter(pk=self.model.pk).update(
            source_kind=SourceKind.FILE, source="/models/checkpoint.safetensors",
            config_source=str(self.folder))
        self.assertContains(self.count("a cat"), ">2/75<")

    def test_a_hub_models_tokenizer_is_read_from_the_cache(self):
        """As the worker downloaded it (the Hugging Face cache's layout); nothing is fetched."""
        cache = Path(tempfile.mkdtemp(prefix="hf-cache-"))
        repo = cache / "models--someone--tiny"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("0" * 40)
        shutil.copytree(self.folder / "tokenizer", repo / "snapshots" / ("0" * 40) / "tokenizer")
        DiffusionModel.objects.filter(pk=self.model.pk).update(source_kind=SourceKind.HUB,
                                                               source="someone/tiny")
        with mock.patch("huggingface_hub.constants.HF_HUB_CACHE", str(cache)):
            self.assertContains(self.count("a cat"), ">2/75<")

    def test_bad_input_names_the_field(self):
        cases = [({"steps": "0"}, "steps"), ({"field": "seed"}, "field"),
                 ({"model": "999"}, "Unknown model"), ({"styles": ["Theirs"]}, "styles"),
                 ({"prompt": "x" * 2001}, "2,001 characters: at most 2,000")]
        for data, message in cases:
            with self.subTest(message=message):
                response = self.count("a cat", **data)
                self.assertIn(response.status_code, (200, 422))
                self.assertContains(response, message, status_code=response.status_code)
                self.assertContains(response, "is-error", status_code=response.status_code)

    def test_other_teams_projects_and_models_off_for_the_team_are_refused(self):
        other = reverse("token_count", args=[self.other_project.pk])
        response = self.client.post(other, {"field": "prompt", "prompt": "a",
                                            "model": self.model.pk})
        self.assertEqual(response.status_code, 404)
        self.client.force_login(self.viewer)
        self.assertEqual(self.count("a cat").status_code, 403)
        self.client.force_login(self.editor)
        switched_off = DiffusionModel.objects.create(name="off", source=str(self.folder))
        TeamModelSetting.objects.create(team=self.team, model=switched_off, is_enabled=False)
        response = self.count("a cat", model=switched_off.pk)
        self.assertEqual(response.status_code, 422)
        self.assertContains(response, "Unknown model", status_code=422)

    @override_settings(STUDIO_TOKEN_COUNTS_PER_MINUTE=2)
    def test_counts_past_the_limit_are_refused(self):
        self.assertEqual(self.count("a").status_code, 200)
        self.assertEqual(self.count("a b").status_code, 200)
        response = self.count("a b c")
        self.assertEqual(response.status_code, 429)
        self.assertContains(response, "limit of 2 token counts per minute", status_code=429)

    def test_the_studio_counts_both_boxes_as_they_are_typed(self):
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertContains(response, f'hx-post="{self.url}"', count=2)
        self.assertContains(response, "input changed delay:400ms from:#id_prompt")
        self.assertContains(response, "input changed delay:400ms from:#id_negative_prompt")

    def test_counting_needs_no_torch(self):
        """What a web node runs: the tokenizer and the chunking, without torch."""
        code = f"""
import sys
from generation.token_counts import token_count, tokenizer_at
print(token_count({LONG!r}, tokenizer_at({str(self.folder)!r}), steps=20))
assert "torch" not in sys.modules, "counting tokens imported torch"
"""
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=False)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(),
                         str(token_count(LONG, tokenizer_at(str(self.folder)), steps=20)))
        self.assertEqual(str(TokenCount(80, 150)), "80/150")


class FlowTokenCounterTestCase(StudioTestCase):
    """FLUX.1 and SD 3.x count T5's tokens against the family's limit, as the worker does
    before it refuses a longer prompt (gpu_workers.flow): the tiny models' T5 tokenizers."""

    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.folders = {}
        cls.models = {}
        for name, family, tokenizer_folder, guidance in [
            ("dev", ModelFamily.FLUX1, "tokenizer_2", True),
            ("schnell", ModelFamily.FLUX1, "tokenizer_2", False),
            ("sd3", ModelFamily.SD3, "tokenizer_3", None),
        ]:
            folder = Path(tempfile.mkdtemp(prefix=f"token-counter-{name}-"))
            cls.tokenizer = tiny_t5_tokenizer(folder / tokenizer_folder, model_max_length=512)
            if guidance is not None:
                (folder / "transformer").mkdir()
                (folder / "transformer" / "config.json").write_text(json.dumps(
                    {"_class_name": "FluxTransformer2DModel", "guidance_embeds": guidance}))
            cls.folders[name] = folder
            cls.models[name] = DiffusionModel.objects.create(
                name=f"tiny {name}", source=str(folder), source_kind=SourceKind.FOLDER,
                family=family)

    def setUp(self):
        self.client.force_login(self.editor)
        self.url = reverse("token_count", args=[self.project.pk])

    def count(self, model, text, field="prompt"):
        return self.client.post(self.url, {"field": field, field: text,
                                           "model": self.models[model].pk, "steps": 20},
                                headers={"HX-Request": "true"})

    def tokens(self, text):
        return len(self.tokenizer(text).input_ids)

    def test_the_families_limits(self):
        for model, limit in (("dev", 512), ("schnell", 256), ("sd3", 256)):
            with self.subTest(model=model):
                response = self.count(model, "a cat on the mat")
                self.assertContains(response, f">{self.tokens('a cat on the mat')}/{limit}<")
                self.assertNotContains(response, "is-error")
        self.assertEqual(self.tokens("a cat on the mat"), 6)  # five words and </s>
        # LoRA tags are left out, as the worker leaves them out.
        self.assertContains(self.count("dev", "a cat <lora:ink:0.8>"), ">3/512<")

    def test_past_the_limit_is_an_error(self):
        """The worker refuses such a prompt (it never cuts it): the count says so."""
        text = "a " * 300
        self.assertEqual(self.tokens(text), 301)
        response = self.count("sd3", text)
        self.assertContains(response, ">301/256<")
        self.assertContains(response, "is-error")
        self.assertContains(response, "at most 256 T5 tokens")
        self.assertNotContains(self.count("dev", text), "is-error")

    def test_flux_reads_no_negative_prompt_and_sd3_counts_it(self):
        self.assertContains(self.count("dev", "blurry", field="negative_prompt"),
                            ">not read by FLUX.1<")
        self.assertContains(self.count("sd3", "blurry", field="negative_prompt"),
                            f">{self.tokens('blurry')}/256<")

    def test_without_the_tokenizer_or_the_config_it_is_unavailable(self):
        shutil.rmtree(self.folders["dev"] / "transformer")
        self.assertContains(self.count("dev", "a cat"), ">token count unavailable<")
        # A folder with its transformer's config but no T5 tokenizer.
        folder = Path(tempfile.mkdtemp(prefix="token-counter-no-t5-"))
        shutil.copytree(self.folders["schnell"] / "transformer", folder / "transformer")
        DiffusionModel.objects.filter(pk=self.models["dev"].pk).update(source=str(folder))
        self.assertContains(self.count("dev", "a cat"), ">token count unavailable<")

    def test_a_hub_models_t5_tokenizer_and_config_are_read_from_the_cache(self):
        """As the worker downloaded them (the Hugging Face cache's layout); nothing is
        fetched."""
        cache = Path(tempfile.mkdtemp(prefix="hf-cache-"))
        repo = cache / "models--someone--tiny-flux"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("0" * 40)
        snapshot = repo / "snapshots" / ("0" * 40)
        for part in ("tokenizer_2", "transformer"):
            shutil.copytree(self.folders["dev"] / part, snapshot / part)
        DiffusionModel.objects.filter(pk=self.models["dev"].pk).update(
            source_kind=SourceKind.HUB, source="someone/tiny-flux")
        with mock.patch("huggingface_hub.constants.HF_HUB_CACHE", str(cache)):
            self.assertContains(self.count("dev", "a cat"), ">3/512<")

    def test_counting_t5_needs_no_torch(self):
        folder = self.folders["sd3"]
        code = f"""
import sys
from generation.token_counts import t5_token_count, t5_token_limit_at, t5_tokenizer_at
tokenizer = t5_tokenizer_at({str(folder)!r}, "sd3")
limit = t5_token_limit_at({str(folder)!r}, "sd3")
print(t5_token_count("a cat on the mat", tokenizer, limit=limit))
assert "torch" not in sys.modules, "counting T5 tokens imported torch"
"""
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=False)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(), "6/256")
