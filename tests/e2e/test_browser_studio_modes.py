"""The studio page in each mode, in the browser: txt2img, img2img, inpaint (with the mask
editor), outpaint, variations, hires fix, ControlNet (with its edge preview) and
IP-Adapter, and the team's embeddings page. Each mode's controls must show; a screenshot of
each is kept in test-artifacts/studio-modes/ for looking at the design. Nothing is
generated."""

import io
import os

import numpy as np
import pytest
from PIL import Image as PILImage

from generation.models import DiffusionModel, Embedding, FluxTransformer, JobStatus, ModelKind
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import make_image, make_job
from tests.e2e.test_browser_generate import ARTIFACTS, CHROMIUM, launch

SHOTS = ARTIFACTS / "studio-modes"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


def square_png():
    pixels = np.full((128, 128, 3), 40, dtype=np.uint8)
    pixels[32:96, 24:104] = (230, 190, 90)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return {"name": "shape.png", "mimeType": "image/png", "buffer": buffer.getvalue()}


def test_the_studio_in_every_mode(studio_processes, tiny_model_dir):
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    user = User.objects.create_user("mia", "mia@example.org", "a-long-test-password-1")
    team = Team.objects.create(name="Mode team")
    Membership.objects.create(team=team, user=user, role=Role.EDITOR)
    project = Project.objects.create(team=team, name="Every mode")
    model = DiffusionModel.objects.create(
        name="tiny-sd15", source=str(tiny_model_dir), default_width=128, default_height=128,
        default_steps=8,
    )
    DiffusionModel.objects.create(
        name="canny-sd15", source="/models/canny", kind=ModelKind.CONTROLNET
    )
    for name, transformer in (("FLUX.1 Depth dev", FluxTransformer.CONTROL),
                              ("FLUX.1 Fill dev", FluxTransformer.FILL)):
        DiffusionModel.objects.create(name=name, source=f"/models/{name}", family="flux1",
                                      flux_transformer=transformer)
    DiffusionModel.objects.create(
        name="ip-adapter-sd15", source="/models/ip-adapter", kind=ModelKind.IP_ADAPTER
    )
    Embedding.objects.create(
        team=team, name="easyneg", sha256="c74b4e810b03" + "0" * 52, size_bytes=25_000,
        family="sd15", layout="a1111", vectors=8, created_by=user,
    )
    job = make_job(project, user, model, status=JobStatus.FINISHED, width=128, height=128,
                   prompt="a lighthouse on a cliff")
    image = make_image(job)
    studio = f"{base_url}/projects/{project.pk}/"
    SHOTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base_url + "/login/")
        page.get_by_label("Username").fill("mia")
        page.get_by_label("Password").fill("a-long-test-password-1")
        page.get_by_role("button", name="Log in").click()

        def shoot(mode):
            # From the top: the sticky top bar stays where a full-page capture expects it.
            page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
            page.wait_for_timeout(200)  # let the panels finish opening
            page.screenshot(path=str(SHOTS / f"studio-{mode}.png"), full_page=True)

        def open_panel(title):
            panel = page.locator("details", has=page.locator("summary", has_text=title))
            if panel.get_attribute("open") is None:
                panel.locator("summary").click()
            return panel

        # Text to image: the prompt first, the model and the size.
        page.goto(studio)
        expect(page.locator("#live-dot")).to_have_text("Live")
        expect(page.get_by_label("Prompt", exact=True)).to_be_visible()
        expect(page.get_by_label("Model", exact=True)).to_be_visible()
        expect(page.get_by_label("Width")).to_have_value("128")
        expect(page.get_by_label("Variation strength")).to_be_hidden()  # Advanced is folded
        shoot("txt2img")

        # img2img from a gallery image: its thumbnail and the denoising strength.
        page.goto(f"{studio}?source={image.pk}")
        expect(page.get_by_text(f"Starting from image #{image.pk}")).to_be_visible()
        expect(page.get_by_label("Denoising strength")).to_be_visible()
        expect(page.locator("[data-mask-status]")).to_have_text("No mask: img2img")
        shoot("img2img")

        # Inpaint: the mask editor, then the painted mask on the form.
        page.get_by_role("button", name="Paint mask").click()
        canvas = page.locator("[data-mask-canvas]")
        expect(canvas).to_be_visible()
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.6, steps=10)
        page.mouse.up()
        for tool in ("Brush", "Eraser", "Invert", "Clear"):
            expect(page.get_by_role("button", name=tool, exact=True)).to_be_visible()
        page.screenshot(path=str(SHOTS / "studio-inpaint-mask-editor.png"))
        page.get_by_role("button", name="Use this mask").click()
        expect(page.locator("[data-mask-status]")).to_have_text("Mask painted: inpaint")
        shoot("inpaint")

        # Outpaint: pixels added on each side of the source.
        page.goto(f"{studio}?source={image.pk}")
        outpaint = page.locator("fieldset.outpaint")
        expect(outpaint).to_be_visible()
        for side in ("Left", "Right", "Top", "Bottom"):
            expect(outpaint.get_by_label(side)).to_be_visible()
        outpaint.get_by_label("Left").fill("64")
        outpaint.get_by_label("Right").fill("64")
        expect(page.locator("[data-mask-status]")).to_have_text("Sides extended: outpaint")
        shoot("outpaint")

        # Variations of an image: its seed, four variation seeds at a small strength.
        page.goto(f"{studio}?duplicate={job.pk}&image={image.pk}&variations=1")
        # Advanced opens by itself: the variation fields are what this mode is about.
        expect(page.get_by_label("Variation strength")).to_have_value("0.25")
        expect(page.get_by_label("Variation seed", exact=True)).to_be_visible()
        expect(page.get_by_label("Batch size")).to_have_value("4")
        shoot("variations")

        # Hires fix: upscale factor, steps and denoising of the second pass.
        page.goto(studio)
        open_panel("Hires fix")
        page.get_by_label("Upscale and redraw").check()
        for label in ("Upscale by", "Hires steps", "Hires denoising"):
            expect(page.get_by_label(label)).to_be_visible()
        shoot("hires-fix")

        # ControlNet: model, control image, thresholds, weight, and the edge preview.
        page.goto(studio)
        open_panel("ControlNet")
        page.get_by_label("ControlNet model").select_option(label="canny-sd15")
        page.get_by_label("Control image").set_input_files(square_png())
        for label in ("Canny low threshold", "Canny high threshold", "Control weight"):
            expect(page.get_by_label(label)).to_be_visible()
        page.get_by_role("button", name="Preview edges").click()
        expect(page.locator("#control-preview img")).to_be_visible()
        shoot("controlnet")

        # A FLUX.1 Depth or Canny model reads the control image itself: the panel keeps only
        # the image, the ControlNet chosen above is let go, and the note says what it does.
        page.get_by_label("Model", exact=True).select_option(label="FLUX.1 Depth dev")
        expect(page.get_by_label("ControlNet model")).to_be_hidden()
        expect(page.get_by_label("ControlNet model")).to_have_value("")
        for label in ("Canny low threshold", "Canny high threshold", "Control weight"):
            expect(page.get_by_label(label)).to_be_hidden()
        expect(page.get_by_role("button", name="Preview edges")).to_be_hidden()
        expect(page.locator("#control-preview img")).to_be_hidden()
        expect(page.get_by_label("Control image")).to_be_visible()
        expect(page.get_by_text("This model follows the image itself")).to_be_visible()
        expect(page.get_by_text("This model makes images from text guided by")).to_be_visible()
        shoot("flux-control")
        page.get_by_label("Model", exact=True).select_option(label="tiny-sd15")
        expect(page.get_by_label("ControlNet model")).to_be_visible()
        expect(page.get_by_text("This model follows the image itself")).to_be_hidden()

        # A FLUX.1 Fill model only redraws part of a source: "From an image" opens for it.
        page.get_by_label("Model", exact=True).select_option(label="FLUX.1 Fill dev")
        expect(page.get_by_text("This model can only inpaint and outpaint")).to_be_visible()
        expect(page.locator("details.source-panel")).to_have_attribute("open", "")

        # IP-Adapter: the adapter, the image prompt and its weight.
        page.goto(studio)
        open_panel("Image prompt (IP-Adapter)")
        page.get_by_label("IP-Adapter model").select_option(label="ip-adapter-sd15")
        page.get_by_label("Image prompt", exact=True).set_input_files(square_png())
        expect(page.get_by_label("Image prompt weight")).to_have_value("0.6")
        shoot("ip-adapter")

        # Embeddings are used by name in the prompt; their library is the team's.
        page.goto(f"{base_url}/teams/{team.pk}/embeddings/")
        expect(page.get_by_role("cell", name="easyneg", exact=True)).to_be_visible()
        expect(page.get_by_label("Embedding file")).to_be_visible()
        page.screenshot(path=str(SHOTS / "embedding-library.png"), full_page=True)
        browser.close()

    shots = sorted(path.name for path in SHOTS.glob("studio-*.png"))
    modes = ["txt2img", "img2img", "inpaint", "outpaint", "variations", "hires-fix",
             "controlnet", "flux-control", "ip-adapter"]
    assert all(f"studio-{mode}.png" in shots for mode in modes)
