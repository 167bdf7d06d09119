"""Bounded decoding: what an upload costs is the work of decoding it, not its bytes.

Every image that enters (generate-form images, parameter imports, subject photos) is
opened by studio.uploads.image_open_bounded: its header's size is checked against
STUDIO_MAX_UPLOAD_PIXELS before any pixel is decoded, for PNG, JPEG, WebP and AVIF
alike, and a request's images share STUDIO_MAX_REQUEST_PIXELS. Subject photos are decoded,
screened (downscaled) and written one at a time. `.safetensors` headers are capped in
bytes and tensors before they are parsed. Keyset cursors and dates from query strings
never reach a 500.
"""

import base64
import gc
import struct
import weakref
from unittest import mock

import pdqhash
import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse
from PIL import AvifImagePlugin, ImageFile, WebPImagePlugin
from PIL import Image as PILImage

from bench.uploads import (
    avif_declaring,
    jpeg_declaring,
    png_declaring,
    safetensors_with,
    webp_declaring,
)
from generation.loras.embeddings.files import EmbeddingFileError, read_embedding_file
from generation.loras.files import LoraFileError, read_lora_file
from generation.parameters_import import ParameterImportError, read_png_parameters
from generation.training.subjects.models import SubjectImage
from gpu_workers.checkpoints import CheckpointError, tensor_names
from studio.moderation.scanners import ScanResult
from studio.moderation.scanning import image_scan
from tests.base import GenerateFormTestCase, StudioTestCase, make_image, make_job
from tests.lora_builders import kohya_lora_bytes
from tests.moderation_helpers import make_textured_image
from tests.subject_builders import image_upload, make_subject

LIMIT = "16,777,216"  # STUDIO_MAX_UPLOAD_PIXELS's default, as messages write it

BOMBS = {
    "PNG": png_declaring(60000, 60000),
    "JPEG": jpeg_declaring(60000, 60000),
    "WebP": webp_declaring(16384, 16384),  # the most a WebP may declare
}


def no_decoding():
    """Patches that fail the test if any decoder runs (ImageFile.load is every plugin's,
    WebP and AVIF decode in load overrides of their own)."""
    refuse = mock.Mock(side_effect=AssertionError("an image was decoded"))
    return (
        mock.patch.object(ImageFile.ImageFile, "load", refuse),
        mock.patch.object(WebPImagePlugin.WebPImageFile, "load", refuse),
        mock.patch.object(AvifImagePlugin.AvifImageFile, "load", refuse),
    )


def png(size, colour=(120, 80, 40)):
    return image_upload("image.png", size=size, colour=colour)


class RecordingScanner:
    """Records the size of every picture it is given; classifies nothing as unsafe."""

    sizes = []

    def scan(self, picture):
        RecordingScanner.sizes.append(picture.size)
        return ScanResult(scanner="recording", scores={"unsafe": 0.0},
                          unsafe_labels=frozenset({"unsafe"}))


# -- Image headers -------------------------------------------------------------------------


def test_pillows_own_guard_is_the_upload_limit():
    assert PILImage.MAX_IMAGE_PIXELS == settings.STUDIO_MAX_UPLOAD_PIXELS


class GenerateFormImageTests(GenerateFormTestCase):
    def setUp(self):
        self.url = reverse("job_create", args=[self.project.pk])
        self.client.force_login(self.editor)
        self.params = {"prompt": "a lighthouse", "model": self.model.pk, "steps": 10,
                       "guidance_scale": 7, "width": 64, "height": 64, "strength": 0.5}

    def test_bombs_are_refused_from_their_header_in_every_image_field_naming_the_limit(self):
        a, b, c = no_decoding()
        for kind, data in BOMBS.items():
            for field in ("source_upload", "control_upload", "ip_adapter_upload"):
                with self.subTest(kind=kind, field=field), a, b, c:
                    self.assert_refused(field, f"more than the {LIMIT} pixels",
                                        **{field: SimpleUploadedFile("bomb", data)})
            with self.subTest(kind=kind, field="mask_data"), a, b, c:
                self.assert_refused(
                    "mask_data", f"more than the {LIMIT} pixels",
                    mask_data="data:image/png;base64," + base64.b64encode(data).decode(),
                )

    def test_a_few_bytes_are_not_an_image(self):
        for data in (b"B", b"x", b"\x89P"):
            with self.subTest(data=data):
                self.assert_refused(
                    "mask_data", "not an image",
                    mask_data="data:image/png;base64," + base64.b64encode(data).decode(),
                )
        self.assert_refused("source_upload", f"more than the {LIMIT} pixels",
                            source_upload=SimpleUploadedFile("bomb", BOMBS["PNG"]))

    def test_an_avif_is_refused_without_its_decoder_ever_running(self):
        opened = mock.Mock(side_effect=AssertionError("the AVIF decoder ran"))
        with mock.patch.object(AvifImagePlugin.AvifImageFile, "_open", opened):
            self.assert_refused("source_upload", "AVIF images are not accepted",
                                source_upload=SimpleUploadedFile(
                                    "a.avif", avif_declaring(60000, 60000)))

    @override_settings(STUDIO_MAX_REQUEST_PIXELS=100 * 100)
    def test_the_forms_images_share_the_request_pixel_budget(self):
        self.assert_refused("control_upload", "at most 10,000 are accepted",
                            source_upload=png((80, 80)), control_upload=png((80, 80)))


class ParameterImportBoundTests(StudioTestCase):
    @override_settings(STUDIO_MAX_UPLOAD_PIXELS=64 * 64)
    def test_an_import_is_held_to_the_upload_pixel_limit(self):
        for kind in ("PNG", "WEBP", "JPEG"):
            with self.subTest(kind=kind):
                data = image_upload(size=(80, 80), format=kind).read()
                with pytest.raises(ParameterImportError, match="at most 4,096"):
                    read_png_parameters(data)

    def test_bombs_are_refused_before_decoding_naming_the_limit(self):
        a, b, c = no_decoding()
        for kind, data in BOMBS.items():
            with self.subTest(kind=kind), a, b, c:
                with pytest.raises(ParameterImportError, match=f"at most {LIMIT}"):
                    read_png_parameters(data)


# -- Subject photos ------------------------------------------------------------------------


class SubjectPhotoBoundTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.subject = make_subject(cls.team, cls.editor, images=0)

    def upload(self, *files):
        self.client.force_login(self.editor)
        return self.client.post(
            reverse("subject_images_upload", args=[self.subject.pk]), {"images": list(files)}
        )

    @override_settings(STUDIO_MAX_REQUEST_PIXELS=2 * 300 * 300)
    def test_a_request_over_the_pixel_budget_is_refused_before_anything_is_decoded(self):
        a, b, c = no_decoding()
        with a, b, c:
            response = self.upload(*[image_upload(f"{n}.png", size=(300, 300))
                                     for n in range(3)])
        self.assertEqual(response.status_code, 422)
        self.assertContains(response, "2.png: These images would decode 270,000 pixels",
                            status_code=422)
        self.assertContains(response, "at most 180,000 are accepted", status_code=422)
        self.assertFalse(SubjectImage.objects.exists())

    def test_photos_are_decoded_one_at_a_time(self):
        screened = []
        alive_at_each_screen = []

        def screen(*, picture, **kwargs):
            gc.collect()
            alive_at_each_screen.append(sum(ref() is not None for ref in screened))
            screened.append(weakref.ref(picture))

        # The subject-image check moderation registers (generation.admission) calls it.
        with mock.patch("studio.moderation.scanning.training_upload_screen", screen):
            response = self.upload(*[image_upload(f"{n}.png", size=(300, 300 + n))
                                     for n in range(4)])
        self.assertRedirects(response, self.subject.get_absolute_url())
        self.assertEqual(alive_at_each_screen, [0, 0, 0, 0])
        self.assertEqual(self.subject.images.count(), 4)
        # Photos are written as they go: a later refusal removes those already written.
        stored = sorted(default_storage.listdir(f"subjects/{self.team.pk}")[1])
        response = self.upload(image_upload("a.png", size=(300, 300)),
                               image_upload("tiny.png", size=(200, 120)))
        self.assertContains(response, "tiny.png: 200x120 is too small", status_code=422)
        self.assertEqual(self.subject.images.count(), 4)
        self.assertEqual(sorted(default_storage.listdir(f"subjects/{self.team.pk}")[1]), stored)

    @override_settings(STUDIO_IMAGE_SCANNER="tests.studio.test_bounded_decoding.RecordingScanner")
    def test_hashing_and_classifying_see_a_downscaled_photo(self):
        RecordingScanner.sizes = []
        with mock.patch("studio.moderation.hashing.pdqhash.compute",
                        wraps=pdqhash.compute) as compute:
            response = self.upload(image_upload("big.png", size=(2400, 1800)))
        self.assertRedirects(response, self.subject.get_absolute_url())
        self.assertEqual(compute.call_args.args[0].shape, (384, 512, 3))
        self.assertEqual(RecordingScanner.sizes, [(1024, 768)])
        self.assertEqual((self.subject.images.get().width, self.subject.images.get().height),
                         (2400, 1800))


@override_settings(STUDIO_IMAGE_SCANNER="tests.studio.test_bounded_decoding.RecordingScanner")
class GeneratedImageScanBoundTests(StudioTestCase):
    def test_a_generated_image_is_classified_downscaled(self):
        RecordingScanner.sizes = []
        picture = PILImage.effect_noise((1600, 1200), 50).convert("RGB")
        image = make_textured_image(self.project, self.editor, self.model, picture=picture)
        image_scan(image_id=image.pk)
        self.assertEqual(RecordingScanner.sizes, [(1024, 768)])


# -- .safetensors headers ------------------------------------------------------------------


def test_a_100_mb_header_is_refused_before_it_is_read(tmp_path):
    path = safetensors_with(tmp_path / "big.safetensors", metadata_bytes=100 * 2**20)
    with mock.patch("json.loads", side_effect=AssertionError("parsed")):
        with pytest.raises(LoraFileError, match=f"at most {LIMIT} are accepted "
                           r"\(STUDIO_MAX_SAFETENSORS_HEADER_BYTES\)"):
            read_lora_file(path)
        with pytest.raises(CheckpointError, match="STUDIO_MAX_SAFETENSORS_HEADER_BYTES"):
            tensor_names(path)


def test_a_header_of_too_many_tensors_is_refused_before_it_is_parsed(tmp_path):
    path = safetensors_with(tmp_path / "many.safetensors", tensors=20_001)
    with mock.patch("json.loads", side_effect=AssertionError("parsed")):
        with pytest.raises(LoraFileError, match="holds 20,001 tensors; at most 20,000"):
            read_lora_file(path)
        with pytest.raises(CheckpointError, match="STUDIO_MAX_SAFETENSORS_TENSORS"):
            tensor_names(path)


def test_tensors_named_with_escaped_keys_count_too(tmp_path, monkeypatch):
    # JSON reads "data\u005foffsets" as "data_offsets", and so does safetensors: the
    # count before parsing misses them, the count of the parsed header doesn't.
    lora = tmp_path / "escaped.safetensors"
    raw = kohya_lora_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = raw[8:8 + size].replace(b'"data_offsets"', b'"data\\u005foffsets"')
    data = raw[8 + size:]
    lora.write_bytes(struct.pack("<Q", len(header)) + header + data)
    read_lora_file(lora)  # within the default caps
    monkeypatch.setenv("STUDIO_MAX_SAFETENSORS_TENSORS", "4")
    with pytest.raises(LoraFileError, match="tensors; at most 4 are accepted"):
        read_lora_file(lora)


def test_the_caps_come_from_the_environment_for_every_kind_of_file(tmp_path, monkeypatch):
    lora = tmp_path / "style.safetensors"
    lora.write_bytes(kohya_lora_bytes())
    read_lora_file(lora)  # within the default caps
    monkeypatch.setenv("STUDIO_MAX_SAFETENSORS_TENSORS", "4")
    with pytest.raises(LoraFileError, match="tensors; at most 4 are accepted"):
        read_lora_file(lora)
    monkeypatch.setenv("STUDIO_MAX_SAFETENSORS_HEADER_BYTES", "16")
    embedding = safetensors_with(tmp_path / "emb.safetensors", tensors=1, prefix="emb_params")
    with pytest.raises(EmbeddingFileError, match="at most 16 are accepted"):
        read_embedding_file(embedding)


def test_an_sdxl_sized_checkpoint_header_still_passes(tmp_path, monkeypatch):
    # ~2,500 tensors in an SDXL checkpoint: far under the default caps. With a cap just
    # under it the same file is refused, so the cap is what is measured.
    path = safetensors_with(tmp_path / "sdxl.safetensors", tensors=2_600,
                            prefix="model.diffusion_model.")
    assert len(tensor_names(path)) == 2_600
    monkeypatch.setenv("STUDIO_MAX_SAFETENSORS_TENSORS", "2599")
    with pytest.raises(CheckpointError, match="holds 2,600 tensors"):
        tensor_names(path)


# -- Cursors and numbers from query strings -----------------------------------------------


class CursorTests(StudioTestCase):
    def test_cursors_and_dates_out_of_range_are_the_first_page(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        self.client.force_login(self.editor)
        pages = [reverse("project_gallery", args=[self.project.pk]),
                 reverse("team_gallery", args=[self.team.pk]), reverse("my_images")]
        queries = [
            {"cursor": "999999999999999999.1"},  # the year 33,000
            {"cursor": "999999999999999999.999999999999999999"},
            {"cursor": "3.999999999999999999.1", "sort": "liked"},
            {"date_to": "9999-12-31"},
            {"date_from": "0001-01-01", "date_to": "9999-12-31"},
        ]
        for url in pages:
            for query in queries:
                with self.subTest(url=url, query=query):
                    response = self.client.get(url, query)
                    self.assertEqual(response.status_code, 200)
                    self.assertContains(response, f"/images/{image.pk}/")

    def test_explore_takes_any_cursor_signed_out(self):
        for query in ({"cursor": "999999999999999999.1"},
                      {"cursor": "1.999999999999999999.1", "sort": "liked"},
                      {"date_to": "9999-12-31"}):
            with self.subTest(query=query):
                self.assertEqual(self.client.get(reverse("explore"), query).status_code, 200)

    def test_another_users_cursor_shows_her_only_her_own_images(self):
        mine = make_image(make_job(self.project, self.editor, self.model))
        self.client.force_login(self.outsider)
        response = self.client.get(reverse("my_images"), {"cursor": "999999999999999999.1"})
        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, f"/images/{mine.pk}/")
        response = self.client.get(reverse("project_gallery", args=[self.project.pk]),
                                   {"cursor": "999999999999999999.1"})
        self.assertEqual(response.status_code, 404)
