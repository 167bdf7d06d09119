"""Media on S3-compatible storage (django-storages), as the containers run it with MinIO:
the settings' S3 block against moto's S3 server on the loopback address."""

import io
import os
import runpy
from pathlib import Path
from unittest import mock

import boto3
from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase, override_settings
from django.urls import reverse
from moto.server import ThreadedMotoServer
from PIL import Image as PILImage

from gallery.thumbnails import image_thumbnails_make
from tests.base import StudioTestCase, make_image, make_job

SETTINGS_FILE = Path(__file__).resolve().parents[2] / "studio" / "settings.py"
BUCKET = "studio-media"
KEYS = {"AWS_ACCESS_KEY_ID": "studio-test", "AWS_SECRET_ACCESS_KEY": "studio-test-secret"}


def settings_with(env):
    """studio/settings.py run afresh with `env` added to the environment."""
    with mock.patch.dict(os.environ, env):
        return runpy.run_path(str(SETTINGS_FILE))


class S3MediaTests(StudioTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        cls.server.start()
        cls.addClassCleanup(cls.server.stop)
        _, port = cls.server.get_host_and_port()
        endpoint = f"http://localhost:{port}"
        cls.s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"])
        cls.s3.create_bucket(Bucket=BUCKET)
        loaded = settings_with({
            "STORAGE_BACKEND": "storages.backends.s3.S3Storage",
            "AWS_STORAGE_BUCKET_NAME": BUCKET,
            "AWS_S3_ENDPOINT_URL": endpoint,
            "AWS_S3_REGION_NAME": "us-east-1",
        })
        # The keys through the environment, as the containers pass them.
        environment = mock.patch.dict(os.environ, KEYS)
        environment.start()
        cls.addClassCleanup(environment.stop)
        cls.storages = override_settings(STORAGES=loaded["STORAGES"])
        cls.storages.enable()
        cls.addClassCleanup(cls.storages.disable)
        super().setUpClass()

    def stored_keys(self):
        listed = self.s3.list_objects_v2(Bucket=BUCKET)
        return {entry["Key"] for entry in listed.get("Contents", [])}

    def test_an_image_is_stored_in_the_bucket_and_streamed_to_its_project(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        self.assertIn(image.file.name, self.stored_keys())
        stored = self.s3.get_object(Bucket=BUCKET, Key=image.file.name)["Body"].read()

        self.client.force_login(self.viewer)
        response = self.client.get(reverse("image_file", args=[image.pk]))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(b"".join(response.streaming_content), stored)
        self.assertEqual(PILImage.open(io.BytesIO(stored)).size, (64, 64))

    def test_another_team_cant_read_an_image_in_the_bucket(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        self.client.force_login(self.outsider)
        response = self.client.get(reverse("image_file", args=[image.pk]))
        self.assertEqual(response.status_code, 404)

    def test_objects_are_private(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        grants = self.s3.get_object_acl(Bucket=BUCKET, Key=image.file.name)["Grants"]
        self.assertEqual([grant["Permission"] for grant in grants], ["FULL_CONTROL"])
        self.assertNotIn("URI", grants[0]["Grantee"])  # no AllUsers or AuthenticatedUsers

    def test_thumbnails_are_made_from_and_into_the_bucket(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        self.assertTrue(image_thumbnails_make(image_id=image.pk))
        image.refresh_from_db()
        size = next(iter(image.thumbnails))
        self.assertIn(image.thumbnails[size], self.stored_keys())

        self.client.force_login(self.viewer)
        response = self.client.get(reverse("image_thumbnail", args=[image.pk, int(size)]))
        self.assertEqual(response.status_code, 200)
        picture = PILImage.open(io.BytesIO(b"".join(response.streaming_content)))
        self.assertEqual(picture.format, "WEBP")

    def test_a_name_taken_in_the_bucket_is_never_overwritten(self):
        from django.core.files.base import ContentFile
        from django.core.files.storage import default_storage

        first = default_storage.save("uploads/test/same.png", ContentFile(b"first"))
        second = default_storage.save("uploads/test/same.png", ContentFile(b"second"))
        self.assertNotEqual(first, second)
        with default_storage.open(first) as handle:
            self.assertEqual(handle.read(), b"first")


    def test_a_large_object_is_read_through_a_temporary_file_not_memory(self):
        from django.core.files.base import ContentFile
        from django.core.files.storage import default_storage

        large = default_storage.save("loras/test/large.bin", ContentFile(b"x" * (17 << 20)))
        small = default_storage.save("loras/test/small.bin", ContentFile(b"x" * 1024))
        with default_storage.open(large) as big, default_storage.open(small) as little:
            self.assertEqual(len(big.read()), 17 << 20)
            self.assertEqual(len(little.read()), 1024)
            # SpooledTemporaryFile: rolled over onto disk past max_memory_size.
            self.assertTrue(big.file._rolled)
            self.assertFalse(little.file._rolled)


class S3SettingsTests(SimpleTestCase):
    def test_s3_without_a_bucket_is_refused_naming_the_variable(self):
        with self.assertRaisesMessage(ImproperlyConfigured, "AWS_STORAGE_BUCKET_NAME"):
            settings_with({"STORAGE_BACKEND": "storages.backends.s3.S3Storage",
                           "AWS_STORAGE_BUCKET_NAME": ""})
