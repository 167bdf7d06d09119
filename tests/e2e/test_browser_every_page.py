"""Every page at a laptop (1440×900), a small laptop (1280×720) and a phone (390×844), for
looking at (issue #15, "Must show"): one full-page screenshot per page and size lands in
test-artifacts/pages/. Each page answers as expected and is no wider than the window at
any size. The stylesheets are one design system (studio.css) plus page stylesheets (issue
#12): no selector is written in two of them, and no page has elements that a stylesheet
it doesn't load would style. Then an accessibility pass: axe-core (from npm, installed by
the test when node_modules lacks it) runs in the studio, gallery, image, Explore and
moderation pages and finds nothing serious or critical. No worker is needed: the data is
made in the test."""

import hashlib
import os
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.apps import apps
from django.core.files.base import ContentFile
from django.template import loader
from django.urls import reverse

from tests.base import make_image, make_job
from tests.e2e.test_browser_collections import painted
from tests.e2e.test_browser_generate import ARTIFACTS, CHROMIUM, launch
from tests.lora_builders import make_lora
from tests.moderation_helpers import make_textured_image, scanning_with
from tests.subject_builders import make_run, make_subject

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]

PASSWORD = "a-long-test-password-15"
SIZES = {"laptop": (1440, 900), "small-laptop": (1280, 720), "phone": (390, 844)}
SHOTS = ARTIFACTS / "pages"
ROOT = Path(__file__).resolve().parents[2]
STYLESHEETS = ROOT / "static" / "css"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
PROMPTS = [
    "a lighthouse on a cliff at dusk, oil painting", "a red fox in fresh snow",
    "an owl in a moonlit pine forest", "a koi pond in autumn, ukiyo-e",
    "a neon city street in the rain", "a glass greenhouse full of ferns",
]


def model(name):
    """Models by app label, so the test doesn't follow modules moving inside an app."""
    return apps.get_model(*name.split("."))


def flagged_image(project, user, diffusion, seed, prompt):
    """An image a scan sent to the moderation queue. Its job is already finished, so the
    server's embedded worker never picks it up while pages are being shot."""
    from gallery.thumbnails import image_thumbnails_make
    from studio.moderation.scanning import image_scan

    image = make_textured_image(project, user, diffusion, seed=seed, prompt=prompt,
                                status="finished")
    image_thumbnails_make(image_id=image.pk)
    settings_, scores = scanning_with(0.64)
    with settings_, scores, pytest.MonkeyPatch.context() as patch:
        patch.setattr("studio.moderation.scanning.publish", lambda *args, **kwargs: None)
        image_scan(image_id=image.pk)
    return image


@pytest.fixture
def studio_with_everything(db):
    """A team owner who is also site staff and a moderator, with something on every page."""
    from studio.moderation.removals import case_remove
    from studio.moderation.reports import report_create

    User, Team, Membership, Project = (model(f"accounts.{name}") for name in
                                       ("User", "Team", "Membership", "Project"))
    Image = model("gallery.Image")
    owner = User.objects.create_superuser("iris", "iris@example.org", PASSWORD)
    editor = User.objects.create_user("tom", "tom@example.org", PASSWORD)
    visitor = User.objects.create_user("vera", "vera@example.org", PASSWORD)
    model("moderation.Moderator").objects.create(user=owner)
    team = Team.objects.create(name="Lighthouse Studio")
    Membership.objects.create(team=team, user=owner, role="owner")
    Membership.objects.create(team=team, user=editor, role="editor")
    project = Project.objects.create(team=team, name="Spring posters",
                                     description="Key art for the spring campaign")
    diffusion = model("generation.DiffusionModel").objects.create(
        name="tiny-sd15", source="/models/tiny-sd15", default_width=512, default_height=512)
    images = [
        painted(make_image(make_job(project, owner, diffusion, prompt=prompt, seed=n,
                                    status="finished")), n)
        for n, prompt in enumerate(PROMPTS)
    ]
    Image.objects.filter(pk__in=[image.pk for image in images[:4]]).update(
        visibility="public", moderation_status="passed")
    flagged_image(project, editor, diffusion, 7, "a poster copied from a stock site")
    removed = images[3]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("studio.moderation.scanning.publish", lambda *args, **kwargs: None)
        report = report_create(reporter=visitor, kind="image", subject=removed, reason="nsfw")
        removal = case_remove(case=report.case, moderator=editor, reason_code="nsfw",
                              note="The poster shows more than the guidelines allow.")
    lora = make_lora(team, owner, "paper_cut", description="Layered paper-cut craft style",
                     trigger_words="paper cut, layered")
    model("generation.Lora").objects.filter(pk=lora.pk).update(is_public=True)
    embedding = model("generation.Embedding")(
        team=team, name="easyneg", family="sd15", layout="a1111", vectors=2,
        size_bytes=6, sha256=hashlib.sha256(b"vector").hexdigest(), created_by=owner)
    embedding.file.save("easyneg.safetensors", ContentFile(b"vector"), save=False)
    embedding.save()
    subject = make_subject(team, owner, name="Rex", images=3)
    # A run that already ended: a queued one would have the server's embedded worker load
    # torch (slow on a busy machine) and fail while its pages are being shot.
    run = make_run(subject, project, owner, diffusion, status="failed", progress_step=2,
                   losses=[[1, 0.31], [2, 0.27]], error="CUDA out of memory at step 3 of 4")
    collection = model("gallery.Collection").objects.create(
        team=team, name="Finals", description="The posters we print", created_by=owner)
    for position, image in enumerate(images[:3]):
        model("gallery.CollectionItem").objects.create(
            collection=collection, image=image, position=position, added_by=owner)
    invitation = model("accounts.Invitation").objects.create(
        team=team, role="editor", created_by=owner)
    return {"team": team, "project": project, "image": images[0], "lora": lora,
            "subject": subject, "run": run, "collection": collection, "removal": removal,
            "invitation": invitation, "public_image": images[1]}


def pages_of(data):
    """(name, path, expected status) for the signed-in owner."""
    team, project, lora = data["team"].pk, data["project"].pk, data["lora"].pk
    return [
        ("dashboard", reverse("dashboard"), 200),
        ("team", reverse("team_detail", args=[team]), 200),
        ("studio", reverse("project_studio", args=[project]), 200),
        ("gallery-project", reverse("project_gallery", args=[project]), 200),
        ("gallery-team", reverse("team_gallery", args=[team]), 200),
        ("my-images", reverse("my_images"), 200),
        ("image", reverse("image_detail", args=[data["image"].pk]), 200),
        ("explore", reverse("explore"), 200),
        ("recently-deleted", reverse("recently_deleted", args=[project]), 200),
        ("prompt-history", reverse("prompt_history"), 200),
        ("my-queue", reverse("my_queue"), 200),
        ("models", reverse("model_library"), 200),
        ("model-new", reverse("model_create"), 200),
        ("team-models", reverse("team_models", args=[team]), 200),
        ("loras", reverse("team_loras", args=[team]), 200),
        ("lora", reverse("lora_detail", args=[lora]), 200),
        ("lora-edit", reverse("lora_edit", args=[lora]), 200),
        ("lora-upload", reverse("lora_upload", args=[team]), 200),
        ("public-loras", reverse("public_loras"), 200),
        ("public-lora", reverse("public_lora_detail", args=[lora]), 200),
        ("embeddings", reverse("team_embeddings", args=[team]), 200),
        ("styles", reverse("team_styles", args=[team]), 200),
        ("wildcards", reverse("team_wildcards", args=[team]), 200),
        ("subjects", reverse("team_subjects", args=[team]), 200),
        ("subject-new", reverse("subject_new", args=[team]), 200),
        ("subject", reverse("subject_detail", args=[data["subject"].pk]), 200),
        ("training-run", reverse("training_detail", args=[data["run"].pk]), 200),
        ("collections", reverse("team_collections", args=[team]), 200),
        ("collection", reverse("collection_detail", args=[data["collection"].pk]), 200),
        ("usage-team", reverse("team_usage", args=[team]), 200),
        ("usage-team-limits", reverse("team_limits", args=[team]), 200),
        ("usage-site", reverse("site_usage"), 200),
        ("moderation-queue", reverse("moderation_queue"), 200),
        ("moderation-appeals", reverse("moderation_appeals"), 200),
        ("moderation-suspensions", reverse("moderation_suspensions"), 200),
        ("moderation-audit", reverse("moderation_audit"), 200),
        ("moderation-policy", reverse("moderation_site_policy"), 200),
        ("moderation-team-policy", reverse("team_policy", args=[team]), 200),
        ("moderation-removal", data["removal"].get_absolute_url(), 200),
        ("notifications", reverse("notifications"), 200),
        ("account-password", reverse("password_change"), 200),
        ("404", "/no-such-page/", 404),
    ]


def new_page(browser, **context):
    """A page whose waits are generous: a loaded 2-core machine serves pages slowly."""
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(60_000)
    return page


def log_in(browser, base_url, username, **context):
    page = new_page(browser, **context)
    page.goto(base_url + reverse("login"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base_url + "/")
    return page


# Lazy images below the fold load now, so that a full-page screenshot shows every picture.
ALL_PICTURES_LOADED = """() => {
  document.querySelectorAll('img[loading="lazy"]').forEach((img) => { img.loading = "eager"; });
  return document.fonts.status === "loaded" && [...document.images].every((img) => img.complete);
}"""


# When the page is wider than the window, the innermost elements that reach past its
# right edge (the likely culprits, e.g. a positioned .sr-only label escaping a scroller).
STICKING_OUT = """() => {
  const limit = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth <= limit) return null;
  const tooWide = (el) => el.getBoundingClientRect().right > limit + 0.5;
  return [...document.querySelectorAll("body *")]
    .filter((el) => tooWide(el) && ![...el.children].some(tooWide))
    .slice(0, 4)
    .map((el) => el.tagName.toLowerCase() + [...el.classList].map((c) => "." + c).join("")
      + " +" + Math.round(el.getBoundingClientRect().right - limit) + "px");
}"""


# Each style rule as [the @media/@supports conditions around it, its selector].
SELECTORS = """(text) => {
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(text);
  const walk = (rules, context) => [...rules].flatMap((rule) =>
    rule instanceof CSSStyleRule ? [[context, rule.selectorText]]
      : rule.cssRules ? walk(rule.cssRules, context + rule.cssText.split("{")[0].trim() + " ")
      : []);
  return walk(sheet.cssRules, "");
}"""

# Rules of the stylesheets this page doesn't load that would style one of its elements:
# styles the page lost (or a page rule that belongs in the design system).
BORROWED = r"""(sheets) => {
  const loaded = new Set([...document.styleSheets].map((s) => (s.href || "").split("/").pop()));
  const found = [];
  for (const [name, rules] of Object.entries(sheets)) {
    if (loaded.has(name)) continue;
    for (const [, selector] of rules) {
      // Pseudo-elements never match an element: ask about the element they hang on.
      const element = selector.replace(/::[\w-]+(\([^)]*\))?/g, "") || "*";
      if (document.querySelector(element)) found.push(name + ": " + selector);
    }
  }
  return found;
}"""


@dataclass
class Findings:
    sheets: dict  # stylesheet name -> its rules' [conditions, selector]
    too_wide: list = field(default_factory=list)
    borrowed: list = field(default_factory=list)


def shoot_everywhere(page, url, name, status, findings):
    """Open the page once, then screenshot it at each size; record any width overflow and
    any style it would borrow from a stylesheet it doesn't load."""
    response = page.goto(url)
    assert response.status == status, (name, response.status)
    findings.borrowed += [(name, rule) for rule in page.evaluate(BORROWED, findings.sheets)]
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        # A new size may reveal more (htmx "revealed" triggers, lazy images): wait for it.
        page.wait_for_load_state("networkidle")
        page.wait_for_function(ALL_PICTURES_LOADED)
        overflow = page.evaluate(STICKING_OUT)
        if overflow:
            findings.too_wide.append((name, size, overflow))
        page.screenshot(path=str(SHOTS / f"{name}-{size}.png"), full_page=True,
                        animations="disabled")


def test_every_page_at_three_sizes(studio_processes, studio_with_everything):
    base_url = studio_processes["base_url"]
    data = studio_with_everything
    SHOTS.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        # Signed out: log in, sign up, password reset, an invitation, Explore.
        page = new_page(browser)
        page.goto(base_url + reverse("login"))
        findings = Findings(sheets={path.name: page.evaluate(SELECTORS, path.read_text())
                                    for path in sorted(STYLESHEETS.glob("*.css"))})
        for name, path in [("login", reverse("login")), ("signup", reverse("signup")),
                           ("password-reset", reverse("password_reset")),
                           ("invitation", data["invitation"].get_absolute_url()),
                           ("explore-signed-out", reverse("explore"))]:
            shoot_everywhere(page, base_url + path, name, 200, findings)
        # The 500 page as the server's handler renders it (nothing here can make it crash).
        error_page = loader.get_template("500.html").render({"request_id": "req-5f3a"})
        page.route(base_url + "/crash/", lambda route: route.fulfill(
            status=500, content_type="text/html", body=error_page))
        shoot_everywhere(page, base_url + "/crash/", "500", 500, findings)

        page = log_in(browser, base_url, "iris")
        for name, path, status in pages_of(data):
            shoot_everywhere(page, base_url + path, name, status, findings)

        # Another member: report the public image; the library's model form is staff only.
        page = log_in(browser, base_url, "vera")
        shoot_everywhere(page, base_url + reverse(
            "moderation_report", args=["image", data["public_image"].pk]), "report", 200,
            findings)
        page = log_in(browser, base_url, "tom")
        shoot_everywhere(page, base_url + reverse("model_create"), "403", 403, findings)
        browser.close()
    written_in = defaultdict(set)
    for sheet, rules in findings.sheets.items():
        for context, selector in rules:
            written_in[context + selector].add(sheet)
    assert {selector: sheets for selector, sheets in written_in.items() if len(sheets) > 1} == {}
    assert findings.borrowed == [], (
        f"styles from a stylesheet the page doesn't load: {findings.borrowed}")
    assert findings.too_wide == [], (
        f"pages wider than the window (page, size, what sticks out): {findings.too_wide}")


# Axe's own script is injected: a context that ignores the page's CSP lets it run (the CSP
# itself is checked by test_browser_csp.py).
RUN_AXE = """async () => {
  const results = await axe.run(document, {resultTypes: ["violations"]});
  return results.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 4).map((n) => n.target.join(" ")),
    why: v.nodes[0].failureSummary,
  }));
}"""


@pytest.fixture(scope="session")
def axe_script():
    """axe-core, pinned by package-lock.json, installed from npm on first use."""
    if not AXE.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed (Debian: apt-get install npm); axe-core comes "
                        "from the npm registry")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True,
                       timeout=600)
    return AXE.read_text()


def test_no_serious_accessibility_violations(studio_processes, studio_with_everything,
                                             axe_script):
    from playwright.sync_api import sync_playwright

    base_url = studio_processes["base_url"]
    data = studio_with_everything
    team, project = data["team"].pk, data["project"].pk
    pages = {
        "studio": reverse("project_studio", args=[project]),
        "project gallery": reverse("project_gallery", args=[project]),
        "team gallery": reverse("team_gallery", args=[team]),
        "image": reverse("image_detail", args=[data["image"].pk]),
        "Explore": reverse("explore"),
        "moderation queue": reverse("moderation_queue"),
        "moderation appeals": reverse("moderation_appeals"),
        "removal": data["removal"].get_absolute_url(),
    }
    found = {}
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = log_in(browser, base_url, "iris", bypass_csp=True)
        # Both themes' colours; the phone's layout shows its own controls (the Menu button).
        for theme, size in [("dark", "laptop"), ("light", "laptop"), ("dark", "phone")]:
            width, height = SIZES[size]
            page.set_viewport_size({"width": width, "height": height})
            page.evaluate("t => localStorage.setItem('studio-theme', t)", theme)
            for name, path in pages.items():
                page.goto(base_url + path)
                page.wait_for_load_state("networkidle")
                page.add_script_tag(content=axe_script)
                serious = [v for v in page.evaluate(RUN_AXE)
                           if v["impact"] in ("serious", "critical")]
                if serious:
                    found[f"{name} ({theme}, {size})"] = serious
        browser.close()
    assert found == {}, "\n".join(f"{page}: {violations}" for page, violations in found.items())
