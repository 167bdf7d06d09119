"""Peak server memory and time for the largest accepted and the most hostile refused upload
of each kind: images (generate form, parameter import, subject photos) and `.safetensors`
headers (LoRAs and embeddings, checkpoints and IP-Adapters).

    python -m bench.uploads --write docs/BENCHMARKS.md          (make bench-uploads)

Each case runs in a process of its own, so one case's memory never hides another's: the
child builds its input, then runs the server's own entry point (`image_from_upload`,
`read_png_parameters`, `subject_images_add`, `read_lora_file`, `tensor_names`) while a
thread samples its resident memory every millisecond. Memory is the peak above what the
process held just before; time is wall time. Subject photos need a database: a throwaway
SQLite one, migrated once by the parent.

The hostile inputs are built here too (the tests use them): tiny files declaring huge
images, and headers of 100 MB or a million tensors.
"""

import argparse
import ctypes
import gc
import io
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

from gpu_workers.bench.report import cpu_model

SECTION = "uploads"

# -- Hostile and large inputs --------------------------------------------------------------


def png_declaring(width, height):
    """A valid PNG of a few dozen bytes whose header declares `width`x`height`."""

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def jpeg_declaring(width, height):
    """A small JPEG whose frame header (SOF0) is rewritten to declare `width`x`height`."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 150)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_declaring(width, height):
    """A small lossless WebP inside an extended (VP8X) container whose canvas is
    `width`x`height` (WebP allows at most 16384 a side)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 150)).save(buffer, format="WEBP", lossless=True)
    image_chunk = buffer.getvalue()[12:]
    canvas = struct.pack("<I", width - 1)[:3] + struct.pack("<I", height - 1)[:3]
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + canvas
    body = b"WEBP" + vp8x + image_chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def avif_declaring(width, height):
    """A small AVIF whose image size property (ispe) declares `width`x`height`."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 150)).save(buffer, format="AVIF")
    data = bytearray(buffer.getvalue())
    ispe = data.index(b"ispe")
    data[ispe + 8:ispe + 16] = struct.pack(">II", width, height)
    return bytes(data)


def photo_png(width, height, seed=0, pnginfo=None):
    """A PNG of smooth gradients with a little noise: photo-like work for the decoder and
    the encoder, small enough on disk to pass the byte limit."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    channels = [(x * (0.3 + 0.2 * c) + y * (0.7 - 0.2 * c) + 40 * c) % 256 for c in range(3)]
    pixels = np.stack(channels, axis=-1) + rng.integers(0, 3, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG", pnginfo=pnginfo)
    return buffer.getvalue()


def safetensors_with(path, *, tensors=0, metadata_bytes=0, prefix="t"):
    """Write a `.safetensors` file of `tensors` one-element F16 tensors named
    `{prefix}{n}` and a metadata value of `metadata_bytes` characters."""
    header = {}
    if metadata_bytes:
        header["__metadata__"] = {"padding": "x" * metadata_bytes}
    for n in range(tensors):
        header[f"{prefix}{n}"] = {"dtype": "F16", "shape": [1], "data_offsets": [2 * n,
                                                                                2 * n + 2]}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as opened:
        opened.write(struct.pack("<Q", len(raw)) + raw + b"\0\0" * tensors)
    return path


# -- Cases ---------------------------------------------------------------------------------


def _upload(name, data):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)


def _image_case(data):
    from studio.uploads import image_from_upload

    return lambda: image_from_upload(_upload("image", data))


def _import_case(data):
    from generation.parameters_import import read_png_parameters

    return lambda: read_png_parameters(data)


def _subject_case(side, count):
    from generation.training.subjects.models import Subject
    from generation.training.subjects.services import subject_images_add
    from studio.accounts.models import Membership, Role, Team, User

    user = User.objects.create_user(f"bench{os.getpid()}", password="x")
    team = Team.objects.create(name=f"Bench {os.getpid()}")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    subject = Subject.objects.create(team=team, name="Rex", token="zxq", class_word="dog",
                                     created_by=user)
    photo = photo_png(side, side)  # the same photo each time: the server's work is alike
    uploads = [_upload(f"{n}.png", photo) for n in range(count)]
    return lambda: subject_images_add(subject=subject, user=user, uploads=uploads)


def lora_with(path, *, pairs, metadata_bytes=0):
    """Write a kohya-style SD 1.x LoRA of `pairs` rank-1 down/up pairs (two tensors each)
    and a metadata value of `metadata_bytes` characters."""
    header, offset = {}, 0
    if metadata_bytes:
        header["__metadata__"] = {"padding": "x" * metadata_bytes}
    for n in range(pairs):
        name = f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_{n}_attn2_to_k"
        for suffix, shape in ((".lora_down.weight", [1, 768]), (".lora_up.weight", [320, 1])):
            size = 2 * shape[0] * shape[1]
            header[name + suffix] = {"dtype": "F16", "shape": shape,
                                     "data_offsets": [offset, offset + size]}
            offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as opened:
        opened.write(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return path


def _lora_case(folder, *, pairs=0, metadata_bytes=0, tensors=0):
    from generation.loras.files import read_lora_file

    path = Path(folder) / "lora.safetensors"
    if tensors:
        safetensors_with(path, tensors=tensors, prefix="lora_unet_")
    else:
        lora_with(path, pairs=pairs, metadata_bytes=metadata_bytes)
    return lambda: read_lora_file(path)


def _checkpoint_case(folder, **shape):
    from gpu_workers.checkpoints import tensor_names

    path = safetensors_with(Path(folder) / "model.safetensors",
                            prefix="model.diffusion_model.", **shape)
    return lambda: tensor_names(path)


MIB = 1024 * 1024

# name: (kind, what, accepted?, builder(folder) -> callable)
CASES = {
    "image-largest": ("Generate-form image", "4096x4096 PNG, the pixel limit", True,
                      lambda folder: _image_case(photo_png(4096, 4096))),
    "image-png-bomb": ("Generate-form image", "PNG of 68 bytes declaring 60000x60000", False,
                       lambda folder: _image_case(png_declaring(60000, 60000))),
    "image-jpeg-bomb": ("Generate-form image", "JPEG declaring 60000x60000", False,
                        lambda folder: _image_case(jpeg_declaring(60000, 60000))),
    "image-webp-bomb": ("Generate-form image", "WebP declaring 16384x16384 (its maximum)",
                        False, lambda folder: _image_case(webp_declaring(16384, 16384))),
    "image-avif-bomb": ("Generate-form image", "AVIF declaring 60000x60000", False,
                        lambda folder: _image_case(avif_declaring(60000, 60000))),
    "import-largest": ("Parameter import", "4096x4096 PNG with A1111 parameters", True,
                       lambda folder: _import_case(photo_png(4096, 4096, pnginfo=_a1111()))),
    "import-png-bomb": ("Parameter import", "PNG declaring 60000x60000", False,
                        lambda folder: _import_case(png_declaring(60000, 60000))),
    "import-webp-bomb": ("Parameter import", "WebP declaring 16384x16384", False,
                         lambda folder: _import_case(webp_declaring(16384, 16384))),
    "subject-largest": ("Subject photos", "30 photos of 2048x2048 (126 Mpx, under the "
                        "request's 134 Mpx)", True, lambda folder: _subject_case(2048, 30)),
    "subject-refused": ("Subject photos", "30 photos of 4096x4096 (503 Mpx)", False,
                        lambda folder: _subject_case(4096, 30)),
    "lora-largest": ("LoRA / embedding header", "20,000 tensors and 12 MiB of metadata "
                     "(a 16 MB header)", True,
                     lambda folder: _lora_case(folder, pairs=10_000, metadata_bytes=12 * MIB)),
    "lora-100mb": ("LoRA / embedding header", "a 100 MB header", False,
                   lambda folder: _lora_case(folder, pairs=1, metadata_bytes=100 * MIB)),
    "lora-tensors": ("LoRA / embedding header", "20,001 tensors (a 1.5 MB header)", False,
                     lambda folder: _lora_case(folder, tensors=20_001)),
    "checkpoint-largest": ("Checkpoint / IP-Adapter header", "20,000 tensors", True,
                           lambda folder: _checkpoint_case(folder, tensors=20_000)),
    "checkpoint-million": ("Checkpoint / IP-Adapter header", "a million tensors (a 91 MB "
                           "header)", False,
                           lambda folder: _checkpoint_case(folder, tensors=1_000_000)),
}


def _a1111():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a lighthouse\nSteps: 20, Sampler: Euler a, CFG scale: 7, "
                  "Seed: 1, Size: 512x512")
    return info


# -- Measuring -----------------------------------------------------------------------------


def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_release():
    """Give the memory freed so far back to the system (glibc keeps freed heap otherwise),
    so that a case's peak is not hidden in what building its input left behind."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the peak may read low
        pass


def measured(run):
    """(seconds, CPU seconds, peak resident bytes above the start, outcome) of `run()`."""
    memory_release()
    start = resident_bytes()
    peak = [start]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began, began_cpu = time.perf_counter(), time.process_time()
    try:
        result = run()
        outcome = "accepted" + (f" ({result} images)" if isinstance(result, int) else "")
    except Exception as error:  # the refusal is the measured outcome
        outcome = f"refused: {getattr(error, 'messages', [str(error)])[0]}"
    seconds, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    done.set()
    sampler.join()
    peak[0] = max(peak[0], resident_bytes())
    return seconds, cpu, peak[0] - start, outcome


def run_case(name):
    """In the child: set Django up, build the case's input, measure it, print JSON."""
    import django

    django.setup()
    with tempfile.TemporaryDirectory(prefix="bench-uploads-") as folder:
        run = CASES[name][3](folder)
        seconds, cpu, memory, outcome = measured(run)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "memory": memory, "outcome": outcome}))


def child_environment(folder):
    environment = dict(os.environ)
    for name in ("REDIS_URL", "STUDIO_IMAGE_SCANNER"):
        environment.pop(name, None)
    environment.update(
        DJANGO_SETTINGS_MODULE="studio.settings", DEBUG="1", LOG_LEVEL="WARNING",
        DATABASE_URL=f"sqlite:///{folder}/bench.sqlite3", MEDIA_ROOT=f"{folder}/media",
    )
    return environment


def machine():
    import PIL

    cpu = cpu_model()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "pillow": PIL.__version__, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load": os.getloadavg()[0]}


def section(results, info, command):
    from django.conf import settings

    from gpu_workers.safetensors_header import header_limits

    header_bytes, tensors = header_limits()
    lines = [
        "## Uploads: peak memory and time, largest accepted and most hostile refused",
        "",
        f"Command: `{command}` (`python -m bench.uploads`)  ",
        f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, Pillow "
        f"{info['pillow']}; {info['date']}; load average {info['load']:.1f} at the start",
        "",
        f"Limits: `STUDIO_MAX_UPLOAD_PIXELS` {settings.STUDIO_MAX_UPLOAD_PIXELS:,}, "
        f"`STUDIO_MAX_REQUEST_PIXELS` {settings.STUDIO_MAX_REQUEST_PIXELS:,}, "
        f"`STUDIO_MAX_UPLOAD_BYTES` {settings.STUDIO_MAX_UPLOAD_BYTES:,}, "
        f"`STUDIO_MAX_SAFETENSORS_HEADER_BYTES` {header_bytes:,}, "
        f"`STUDIO_MAX_SAFETENSORS_TENSORS` {tensors:,}. Each case in a fresh process "
        "through the server's own entry point; memory is the peak resident memory above "
        "what the process held just before (sampled every millisecond); time is wall time, "
        "CPU the process's own (steadier on a shared machine). "
        "Subject photos include hashing (PDQ), the classifier (none installed here: hash "
        "only) and writing each photo as PNG.",
        "",
        "| upload | input | outcome | time (s) | CPU (s) | peak memory (MiB) |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for name, numbers in results:
        kind, what, _, _ = CASES[name]
        outcome = numbers["outcome"].replace("|", "/")
        if len(outcome) > 110:
            outcome = outcome[:107] + "…"
        lines.append(f"| {kind} | {what} | {outcome} | {numbers['seconds']:.2f} | "
                     f"{numbers['cpu']:.2f} | {numbers['memory'] / MIB:.0f} |")
    lines += [
        "",
        "Refused images are refused from their headers: no pixel is decoded. Accepted "
        "subject photos are decoded, screened and written one at a time, so memory stays "
        "that of one photo whatever their number. Headers over a cap are refused before "
        "they are read or parsed.",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, help="the markdown file whose section to replace")
    parser.add_argument("--command", default="make bench-uploads")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="run these cases")
    args = parser.parse_args(argv)
    if args.case:
        run_case(args.case)
        return
    with tempfile.TemporaryDirectory(prefix="bench-uploads-") as folder:
        environment = child_environment(folder)
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "--verbosity",
                        "0"], env=environment, check=True)
        os.environ.update(environment)
        import django

        django.setup()
        info = machine()
        results = []
        for name in args.only or CASES:
            done = subprocess.run([sys.executable, "-m", "bench.uploads", "--case",
                                   name], env=environment, check=True, capture_output=True,
                                  text=True)
            numbers = json.loads(done.stdout.strip().splitlines()[-1])
            results.append((name, numbers))
            print(f"{name:20} {numbers['seconds']:7.2f} s {numbers['cpu']:7.2f} s CPU "
                  f"{numbers['memory'] / MIB:8.1f} MiB "
                  f"{numbers['outcome'][:90]}", file=sys.stderr)
        markdown = section(results, info, args.command)
    print(markdown)
    if args.write:
        from gpu_workers.bench.report import write_section

        write_section(args.write, SECTION, markdown)


if __name__ == "__main__":
    main()
