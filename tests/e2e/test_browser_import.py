"""A person's view of the parameter import: pick an A1111 PNG with "Import from image", then
drop a ComfyUI PNG on the page, then paste A1111's parameters into the prompt; the form
fills, says what was not applied, and keeps the img2img source file the user had chosen.
Screenshots land in test-artifacts/."""

import base64
import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image as PILImage
from PIL import PngImagePlugin

from generation.models import DiffusionModel
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.e2e.test_browser_generate import CHROMIUM, launch
from tests.generation.parameters_import.test_parameters_import import A1111_INFOTEXT, COMFYUI_GRAPH

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]

# Drags a PNG (base64) over the page, then drops it: what a file from the desktop does.
DRAG_AND_DROP = """
async ([data, name, drop]) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, {type: "image/png"}));
  const target = document.querySelector(".studio-canvas");
  for (const type of drop ? ["dragenter", "dragover", "drop"] : ["dragenter", "dragover"]) {
    target.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true,
                                               dataTransfer: transfer}));
  }
}
"""

# Pastes text into the focused element, as the clipboard does; where the page lets the paste
# through, the text goes in at the end (Chromium inserts nothing for a synthetic event).
PASTE = """
(text) => {
  const target = document.activeElement;
  const transfer = new DataTransfer();
  transfer.setData("text/plain", text);
  const event = new ClipboardEvent("paste", {bubbles: true, cancelable: true,
                                             clipboardData: transfer});
  if (target.dispatchEvent(event)) {
    target.value += text;
  }
}
"""


def png(chunks):
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 64), (120, 40, 200)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_import_by_button_and_by_drop(studio_processes):
    from playwright.sync_api import expect, sync_playwright

    base_url = studio_processes["base_url"]
    User.objects.create_user("ivy", "ivy@example.org", "a-long-test-password-2")
    team = Team.objects.create(name="Import team")
    Membership.objects.create(team=team, user=User.objects.get(username="ivy"), role=Role.EDITOR)
    project = Project.objects.create(team=team, name="Imports")
    DiffusionModel.objects.create(name="tiny-sd15", source="/nowhere/tiny-sd15")
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(base_url + "/login/")
        page.get_by_label("Username").fill("ivy")
        page.get_by_label("Password").fill("a-long-test-password-2")
        page.get_by_role("button", name="Log in").click()
        page.goto(base_url + project.get_absolute_url())

        # An img2img source chosen before the import stays chosen after it.
        page.locator("input[name=source_upload]").set_input_files(
            {"name": "source.png", "mimeType": "image/png", "buffer": png({})}
        )
        page.get_by_label("Import from image").set_input_files(
            {"name": "castle.png", "mimeType": "image/png",
             "buffer": png({"parameters": A1111_INFOTEXT})}
        )
        notice = page.locator("[data-import-notice]")
        expect(notice).to_contain_text("Imported from castle.png (AUTOMATIC1111 v1.10.1)")
        expect(notice).to_contain_text("LoRA: foo (not in your team's library)")
        expect(page.get_by_label("Prompt", exact=True)).to_have_value("a castle, (masterpiece:1.2)")
        expect(page.get_by_label("Negative prompt")).to_have_value("blurry, lowres")
        expect(page.get_by_label("Sampler")).to_have_value("DPM++ 2M Karras")
        expect(page.get_by_label("Seed", exact=True)).to_have_value("1234")
        expect(page.get_by_label("Import from image")).to_be_focused()
        assert page.evaluate(
            "document.querySelector('input[name=source_upload]').files[0].name"
        ) == "source.png"
        page.screenshot(path=str(ARTIFACTS / "studio-import-a1111.png"))

        # Dragging a file over the page shows where it goes; dropping it imports it.
        comfy = base64.b64encode(png({"prompt": json.dumps(COMFYUI_GRAPH)})).decode()
        page.evaluate(DRAG_AND_DROP, [comfy, "ComfyUI_00001_.png", False])
        expect(page.locator("#drop-overlay")).to_be_visible()
        expect(page.locator("#drop-overlay")).to_contain_text("Drop to import its parameters")
        page.screenshot(path=str(ARTIFACTS / "studio-import-drop-overlay.png"))
        page.evaluate(DRAG_AND_DROP, [comfy, "ComfyUI_00001_.png", True])
        expect(page.locator("#drop-overlay")).to_be_hidden()
        expect(notice).to_contain_text("Imported from ComfyUI_00001_.png (ComfyUI)")
        # The graph's LoraLoader comes back as A1111's prompt tag.
        expect(page.get_by_label("Prompt", exact=True)).to_have_value(
            "beautiful scenery, glass bottle, galaxy <lora:paper_cut:0.8>"
        )
        expect(page.get_by_label("Width")).to_have_value("512")
        expect(page.get_by_label("Clip skip")).to_have_value("2")

        # A1111's parameters pasted into the prompt fill the form (as A1111's "read
        # generation parameters" button does); ordinary text pastes as text.
        prompt = page.get_by_label("Prompt", exact=True)
        prompt.focus()
        page.evaluate(PASTE, A1111_INFOTEXT)
        expect(notice).to_contain_text("Imported from pasted text (AUTOMATIC1111 v1.10.1)")
        expect(prompt).to_have_value("a castle, (masterpiece:1.2)")
        expect(page.get_by_label("Seed", exact=True)).to_have_value("1234")
        prompt.focus()
        page.evaluate(PASTE, " and a moat")
        expect(prompt).to_have_value("a castle, (masterpiece:1.2) and a moat")

        # A file that is no image: the form stays, the message says why.
        page.get_by_label("Import from image").set_input_files(
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}
        )
        expect(notice).to_contain_text("Nothing imported from notes.txt")
        expect(page.get_by_label("Width")).to_have_value("512")
        page.screenshot(path=str(ARTIFACTS / "studio-import-refused.png"))
        browser.close()
