"""A campaign from brief to export, in real headless Chromium against `farm up`: sign in as the
first-run admin, create a campaign and a template, submit a job of four renders on the tiny model,
watch it reach 100% live, approve two, request changes on one, re-render it, approve the new
version, export the ZIP and check its manifest. A screenshot at every step (see conftest.py).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveFarm, Steps

CAMPAIGN = "Spring launch"
BRAND = "Acme Coffee"
STYLE_SUFFIX = "studio lighting"
TEMPLATE = "Hero shot"
BODY = "{{ product }} on {{ background }}"
NEGATIVE = "blurry"
ROWS = [("a red mug", "a wooden table"), ("a blue kettle", "white marble")]
SEEDS = [11, 12]
FORMAT = ("display_mrec", "Display medium rectangle (MREC)", 300, 250)
MODEL = "tiny-sd"
STEPS, SIZE = 4, 64  # the tiny model on a CPU: a few steps at a small generation size
CHANGES_COMMENT = "Closer crop and warmer light, please."
CHANGED_PROMPT_ADDITION = "close-up, warm light"
TINY_MODEL_LICENSE = "Apache-2.0"
# Every render of the job and of the re-render waits for the CPU; generous, but explicit.
RENDER_TIMEOUT_MS = 180_000


def prompt_of(product: str, background: str) -> str:
    return f"{product} on {background}, {STYLE_SUFFIX}"


def sign_in(page: Page, steps: Steps, farm: LiveFarm) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    steps.shot("sign-in")
    page.get_by_label("Name").fill(farm.admin_name)
    page.get_by_label("Password").fill(farm.admin_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".usermenu summary")).to_contain_text(farm.admin_name)
    steps.shot("overview")


def nav_to(page: Page, label: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=label, exact=True).click()


def create_campaign(page: Page, steps: Steps) -> None:
    nav_to(page, "Campaigns")
    expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()
    page.get_by_role("link", name="New campaign").first.click()
    expect(page.get_by_role("heading", name="New campaign")).to_be_visible()
    page.get_by_label("Name").fill(CAMPAIGN)
    page.get_by_label("Brand", exact=True).fill(BRAND)
    expect(page.get_by_label("Commercial use")).to_be_checked()
    page.get_by_label("Default model").select_option(MODEL)
    page.get_by_label("Style suffix").fill(STYLE_SUFFIX)
    page.get_by_label(FORMAT[1]).check()
    steps.shot("campaign-form")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.get_by_role("heading", name=CAMPAIGN)).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text(f"Created campaign {CAMPAIGN}")
    steps.shot("campaign-created")


def create_template(page: Page, steps: Steps) -> None:
    page.get_by_role("link", name="New template").first.click()
    expect(page.get_by_role("heading", name=f"New template for {CAMPAIGN}")).to_be_visible()
    page.get_by_label("Template name").fill(TEMPLATE)
    page.get_by_label("Variables").fill("product, background")
    page.get_by_label("Prompt template", exact=True).fill(BODY)
    page.get_by_label("Negative prompt template").fill(NEGATIVE)
    page.get_by_label("Model").select_option(MODEL)
    page.get_by_label("Steps").fill(str(STEPS))
    page.get_by_label("Width").fill(str(SIZE))
    page.get_by_label("Height").fill(str(SIZE))
    # The rows table follows the declared variables; preview the first row before saving.
    product, background = ROWS[0]
    page.get_by_label("Row 1 product").fill(product)
    page.get_by_label("Row 1 background").fill(background)
    page.get_by_role("button", name="Preview").click()
    results = page.locator("#preview-results")
    expect(results).to_contain_text("Every row expands.")
    expect(results).to_contain_text(prompt_of(product, background))
    steps.shot("template-preview")
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_role("heading", name=TEMPLATE)).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text(f"Created template {TEMPLATE}")
    steps.shot("template-saved")


def submit_batch(page: Page, steps: Steps) -> int:
    page.get_by_role("link", name="New batch").first.click()
    expect(page.get_by_role("heading", name=f"New batch for {CAMPAIGN}")).to_be_visible()
    for index, (product, background) in enumerate(ROWS, start=1):
        if not page.get_by_label(f"Row {index} product").count():
            page.get_by_role("button", name="Add row").click()
        page.get_by_label(f"Row {index} product").fill(product)
        page.get_by_label(f"Row {index} background").fill(background)
    page.get_by_label("Seeds", exact=True).fill(", ".join(map(str, SEEDS)))
    expect(page.get_by_label(FORMAT[1])).to_be_checked()  # the campaign's format, preselected
    page.get_by_label("Job name").fill("Round 1")
    page.get_by_role("button", name="Check", exact=True).click()
    plan = page.locator("[data-plan]")
    expect(plan.get_by_role("heading")).to_have_text("Check: 4 renders")
    expect(plan).to_contain_text(f"2 rows × 2 seeds × 1 format on {MODEL}, {STEPS} steps")
    steps.shot("batch-checked")
    page.get_by_role("button", name="Submit batch").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    return int(re.search(r"/jobs/(\d+)$", page.url).group(1))


def watch_job_finish(page: Page, steps: Steps, job_id: int, renders: int, name: str) -> float:
    """The job page updates itself (Server-Sent Events or polling) until every render is done;
    a marker set on the window proves that the page was never reloaded meanwhile. Returns the
    percentage the page showed when it opened."""
    page.evaluate("window.__notReloaded = true")
    progress = page.get_by_test_id("job-progress")
    expect(page.get_by_test_id("render-row")).to_have_count(renders)
    opened_at = float(progress.get_attribute("aria-valuenow"))
    steps.shot(f"{name}-submitted")
    try:
        # "100.0" when the server wrote the page, "100" when the page's script updated it.
        expect(progress).to_have_attribute("aria-valuenow", re.compile(r"^100(\.0)?$"), timeout=RENDER_TIMEOUT_MS)
    except AssertionError:
        # Slow renders, or a page that stopped updating? Ask the server what it knows.
        server = page.request.get(f"/jobs/{job_id}/progress.json").json()["job"]
        raise AssertionError(
            f"job {job_id}: the page shows {progress.get_attribute('aria-valuenow')}% after "
            f"{RENDER_TIMEOUT_MS // 1000} s; the server says {server['percent']}% ({server['status']}, "
            f"counts {server['counts']}, waiting: {server['waiting_reason']})") from None
    expect(page.get_by_test_id("job-status")).to_have_text("succeeded")
    expect(page.get_by_test_id("job-progress-text")).to_have_text(
        re.compile(rf"^{renders} / {renders} renders finished · 100(\.0)?%$"))
    for row in page.get_by_test_id("render-row").all():
        expect(row.locator("[data-field=state]")).to_have_text("succeeded")
        expect(row.get_by_role("img")).to_be_visible()  # the thumbnail, shown once it exists
    assert page.evaluate("window.__notReloaded === true"), "the job page reloaded instead of updating itself"
    steps.shot(f"{name}-finished")
    return opened_at


@dataclass
class QueuedAsset:
    asset_id: int
    prompt: str
    seed: int


def review_in_queue(page: Page, steps: Steps, job_id: int) -> tuple[list[QueuedAsset], QueuedAsset]:
    """In the review queue, with the keyboard: A approves the highlighted asset and moves on;
    C opens its comment, Enter sends "request changes". Decisions are sent without a reload."""
    nav_to(page, "Review")
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
    items = page.get_by_test_id("review-item")
    expect(items).to_have_count(len(ROWS) * len(SEEDS))
    queued = []
    for item in items.all():
        meta = item.locator(".meta").inner_text()
        assert f"job {job_id}" in meta and MODEL in meta, meta
        queued.append(QueuedAsset(int(item.get_attribute("data-asset-id")), item.locator(".prompt").inner_text(),
                                  int(re.search(r"seed (\d+)", meta).group(1))))
    assert sorted((q.prompt, q.seed) for q in queued) == sorted(
        (prompt_of(*row), seed) for row in ROWS for seed in SEEDS)
    steps.shot("review-queue")
    page.evaluate("window.__notReloaded = true")

    def state_of(index: int):
        return items.nth(index).locator("[data-role=state]")

    expect(items.nth(0)).to_have_class(re.compile(r"\bcurrent\b"))
    page.keyboard.press("a")
    expect(state_of(0)).to_have_text("approved")
    expect(items.nth(1)).to_have_class(re.compile(r"\bcurrent\b"))
    page.keyboard.press("a")
    expect(state_of(1)).to_have_text("approved")
    expect(items.nth(2)).to_have_class(re.compile(r"\bcurrent\b"))
    page.keyboard.press("c")
    comment = items.nth(2).get_by_label("Comment")
    expect(comment).to_be_focused()
    comment.press_sequentially(CHANGES_COMMENT)
    page.keyboard.press("Enter")
    expect(state_of(2)).to_have_text("changes requested")
    expect(state_of(3)).to_have_text("pending")
    assert page.evaluate("window.__notReloaded === true"), "the review queue reloaded instead of deciding in place"
    steps.shot("review-decided")
    return queued[:2], queued[2]


def rerender_with_changes(page: Page, steps: Steps, changed: QueuedAsset) -> str:
    """From the asset page: the request for changes is in its history; re-render it with a new
    prompt; returns that prompt."""
    page.get_by_test_id("review-item").nth(2).get_by_role("link", name=f"Asset {changed.asset_id}", exact=True).click()
    expect(page.get_by_role("heading", name=f"Asset {changed.asset_id}")).to_be_visible()
    expect(page.get_by_test_id("approval-state")).to_have_text("changes requested")
    history = page.get_by_test_id("review-history")
    expect(history).to_contain_text(CHANGES_COMMENT)
    expect(history).to_contain_text("admin")
    expect(page.get_by_test_id("asset-image")).to_have_js_property("naturalWidth", FORMAT[2])
    steps.shot("asset-changes-requested")
    page.get_by_test_id("rerender").locator("summary").click()
    prompt = page.get_by_label("Prompt", exact=True)
    expect(prompt).to_have_value(changed.prompt)
    new_prompt = f"{changed.prompt}, {CHANGED_PROMPT_ADDITION}"
    prompt.fill(new_prompt)
    expect(page.get_by_label("Seed")).to_have_value(str(changed.seed))
    steps.shot("rerender-form")
    page.get_by_test_id("rerender-submit").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    expect(page.get_by_role("status")).to_contain_text("Re-render submitted as job")
    return new_prompt


def approve_new_version(page: Page, steps: Steps, changed: QueuedAsset, new_prompt: str) -> int:
    page.get_by_test_id("render-row").first.get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile(r"Asset \d+ version 2"))).to_be_visible()
    new_id = int(re.search(r"/assets/(\d+)", page.url).group(1))
    expect(page.get_by_test_id("approval-state")).to_have_text("pending")
    expect(page.get_by_test_id("parameters")).to_contain_text(new_prompt)
    versions = page.get_by_test_id("versions")
    expect(versions.get_by_test_id("version-1")).to_have_attribute("data-asset-id", str(changed.asset_id))
    expect(versions.get_by_test_id("version-1")).to_contain_text("changes requested")
    expect(versions.get_by_test_id("version-2")).to_have_attribute("data-asset-id", str(new_id))
    page.get_by_test_id("compare-parent").click()
    expect(page).to_have_url(re.compile(r"/assets/compare"))
    expect(page.get_by_role("heading").first).to_be_visible()
    steps.shot("compare-versions")
    page.go_back()
    page.get_by_test_id("review-form").get_by_label("Comment").fill("Better, thanks")
    page.get_by_test_id("approve").click()
    expect(page.get_by_role("status")).to_contain_text(f"Approved asset {new_id}")
    expect(page.get_by_test_id("approval-state")).to_have_text("approved")
    expect(page.get_by_test_id("review-history")).to_contain_text("Better, thanks")
    steps.shot("new-version-approved")
    return new_id


def model_sha256(page: Page) -> str:
    title = page.get_by_test_id("model-hash").get_attribute("title")
    return re.fullmatch(r"sha256 ([0-9a-f]{64})", title).group(1)


def export_zip(page: Page, steps: Steps, artifacts: Path, approved: int, total: int) -> Path:
    """The campaign page counts the assets by approval state; the gallery shows them; the campaign
    page's button downloads the ZIP of the approved ones (kept with the screenshots)."""
    nav_to(page, "Campaigns")
    page.get_by_role("link", name=CAMPAIGN).click()
    expect(page.get_by_role("heading", name=CAMPAIGN)).to_be_visible()
    expect(page.locator(".badge.state-approved")).to_have_text(f"approved {approved}")
    steps.shot("campaign-with-assets")
    page.get_by_role("link", name="Open in the gallery").click()
    expect(page.get_by_role("heading", name="Gallery")).to_be_visible()
    expect(page.get_by_test_id("gallery-item")).to_have_count(total)
    for image in page.get_by_test_id("gallery-item").get_by_role("img").all():
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("img => img.naturalWidth") > 0, "a gallery thumbnail did not load"
    steps.shot("gallery")
    page.go_back()
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export approved assets (ZIP)").click()
    download = download_info.value
    assert download.failure() is None, download.failure()
    assert re.fullmatch(r"Spring-launch-\d+-approved-\d{8}T\d{6}Z\.zip", download.suggested_filename), \
        download.suggested_filename
    path = artifacts / download.suggested_filename
    download.save_as(path)
    return path


def check_manifest(archive_path: Path, expected: dict[int, dict]) -> None:
    """The ZIP holds exactly the approved images, and manifest.json and manifest.csv say for each:
    file, format, prompt, seed, model, model sha256, license, approvals, lineage."""
    with zipfile.ZipFile(archive_path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode("utf-8"))))
        assert manifest["campaign"]["name"] == CAMPAIGN and manifest["campaign"]["brand"] == BRAND
        assert manifest["exported_by"] == "admin"
        assets = manifest["assets"]
        assert sorted(a["asset_id"] for a in assets) == sorted(expected)
        assert sorted(archive.namelist()) == sorted([a["file"] for a in assets]
                                                    + ["manifest.csv", "manifest.json", "LICENSES.txt"])
        for entry in assets:
            want = expected[entry["asset_id"]]
            assert entry["file"] == f"images/{entry['asset_id']}_{FORMAT[0]}_{want['seed']}.png"
            assert {key: entry[key] for key in want} == want, entry
            assert len(entry["approvals"]) == 1 and entry["approvals"][0]["reviewer"] == "admin", entry
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["approvals"][0]["approved_at"])
            png = archive.read(entry["file"])
            assert hashlib.sha256(png).hexdigest() == entry["sha256"]
            assert Image.open(io.BytesIO(png)).size == (FORMAT[2], FORMAT[3])
    assert [int(r["asset_id"]) for r in rows] == [a["asset_id"] for a in assets]
    for row, entry in zip(rows, assets):
        assert row["file"] == entry["file"] and row["prompt"] == entry["prompt"]
        assert row["negative_prompt"] == entry["negative_prompt"] and int(row["seed"]) == entry["seed"]
        assert (row["model"], row["model_sha256"], row["license"]) == (entry["model"], entry["model_sha256"],
                                                                        entry["license"])
        assert row["channel_format"] == FORMAT[0] and (int(row["width"]), int(row["height"])) == FORMAT[2:]
        assert row["approvals"] == f"admin {entry['approvals'][0]['approved_at']}"
        assert row["parent_asset_id"] == ("" if entry["parent_asset_id"] is None else str(entry["parent_asset_id"]))
        assert int(row["version"]) == entry["version"] and row["sha256"] == entry["sha256"]


def test_campaign_from_brief_to_export(page: Page, steps: Steps, live_farm: LiveFarm, artifacts: Path):
    sign_in(page, steps, live_farm)
    create_campaign(page, steps)
    create_template(page, steps)
    job_id = submit_batch(page, steps)
    renders = len(ROWS) * len(SEEDS)
    expect(page.get_by_role("status")).to_contain_text(f"Submitted job #{job_id}: {renders} renders")
    expect(page.get_by_text(f"{renders} (2 rows × 2 seeds × 1 format)")).to_be_visible()
    opened_at = watch_job_finish(page, steps, job_id, renders, "job")
    # The first render waits for the worker to load the model, so the page opens before the end:
    # what it then showed came live.
    assert opened_at < 100, "the job had finished before its page opened; nothing was watched live"

    approved, changed = review_in_queue(page, steps, job_id)
    new_prompt = rerender_with_changes(page, steps, changed)
    watch_job_finish(page, steps, int(re.search(r"/jobs/(\d+)$", page.url).group(1)), 1, "rerender")
    new_id = approve_new_version(page, steps, changed, new_prompt)
    sha256 = model_sha256(page)

    archive = export_zip(page, steps, artifacts, approved=3, total=renders + 1)
    common = {"model": MODEL, "model_sha256": sha256, "license": TINY_MODEL_LICENSE, "channel_format": FORMAT[0],
              "width": FORMAT[2], "height": FORMAT[3], "negative_prompt": NEGATIVE}
    expected = {a.asset_id: {**common, "prompt": a.prompt, "seed": a.seed, "version": 1, "parent_asset_id": None}
                for a in approved}
    expected[new_id] = {**common, "prompt": new_prompt, "seed": changed.seed, "version": 2,
                        "parent_asset_id": changed.asset_id}
    check_manifest(archive, expected)

    assert not page.problems.messages, page.problems.messages
