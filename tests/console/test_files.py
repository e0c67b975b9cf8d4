"""The Files pages: buckets, browsing prefixes as folders, uploads with progress, downloads,
deletes, paging, and drag-and-drop."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
from playwright.sync_api import expect

from tests.console import notice


def _bucket() -> str:
    return "b-" + uuid.uuid4().hex[:10]


def test_bucket_upload_browse_download_delete(page, rest: httpx.Client, tmp_path: Path,  # type: ignore[no-untyped-def]
                                              shot) -> None:
    bucket = _bucket()
    page.goto("/files")
    page.get_by_label("Bucket name").fill(bucket)
    page.get_by_role("button", name="Create bucket").click()
    # The list is drawn again once the bucket is made: click its link once that has settled
    # (a click on the link of the list being replaced goes nowhere, on a loaded machine).
    expect(page.get_by_label("Bucket name")).to_have_value("")
    page.get_by_role("link", name=bucket, exact=True).first.click()
    expect(page).to_have_url(re.compile(rf"/files/{bucket}$"), timeout=15_000)
    expect(page.get_by_text(f"The bucket {bucket} is empty")).to_be_visible()

    # A new folder is a prefix to upload into; the URL is its path.
    page.get_by_role("button", name="New folder").click()
    page.get_by_label("Folder name").fill("raw")
    page.get_by_role("button", name="Open folder").click()
    expect(page).to_have_url(re.compile(rf"/files/{bucket}/raw/$"))
    data = bytes(range(256)) * 4000  # a megabyte, not text
    (tmp_path / "blob.bin").write_bytes(data)
    (tmp_path / "notes.txt").write_text("hello\n")
    page.get_by_label("Upload files").set_input_files([tmp_path / "blob.bin",
                                                       tmp_path / "notes.txt"])
    for key in ("raw/blob.bin", "raw/notes.txt"):
        bar = page.get_by_role("progressbar", name=f"Upload of {key}")
        expect(bar).to_have_attribute("aria-valuenow", "100")
    uploads = page.get_by_role("region", name="Uploads")
    expect(uploads).to_contain_text("2 of 2 uploaded")
    listing = page.get_by_role("region", name=f"Objects in {bucket}/raw/")
    expect(listing.get_by_role("button", name="blob.bin: details")).to_be_visible()
    expect(listing.get_by_role("row", name=re.compile("blob.bin"))).to_contain_text("1000 KB")

    # Up to the bucket by the breadcrumbs, then into the folder again.
    page.get_by_role("navigation", name="Breadcrumbs").get_by_role("link", name=bucket).click()
    expect(page).to_have_url(re.compile(rf"/files/{bucket}$"))
    page.get_by_role("link", name="raw/").click()
    expect(page).to_have_url(re.compile(rf"/files/{bucket}/raw/$"))
    expect(listing.get_by_role("button", name="notes.txt: details")).to_be_visible()
    shot(page, "files")

    # Details, and the download is the same bytes under the object's name.
    page.get_by_role("button", name="blob.bin: details").click()
    details = page.get_by_role("region", name="Object blob.bin")
    expect(details).to_contain_text("raw/blob.bin")
    expect(details).to_contain_text("1,024,000 bytes")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download blob.bin").click()
    assert download.value.suggested_filename == "blob.bin"
    assert Path(download.value.path()).read_bytes() == data

    # Delete one object (asked first; Cancel keeps it), then the whole folder.
    page.get_by_role("button", name="Delete blob.bin").click()
    dialog = page.get_by_role("dialog", name="Delete blob.bin?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Delete blob.bin").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(notice(page, f"Deleted {bucket}/raw/blob.bin")).to_be_visible()
    expect(listing.get_by_role("button", name="blob.bin: details")).to_have_count(0)
    expect(listing.get_by_role("button", name="notes.txt: details")).to_be_visible()
    page.get_by_role("navigation", name="Breadcrumbs").get_by_role("link", name=bucket).click()
    page.get_by_role("button", name="Delete folder raw").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete everything").click()
    expect(notice(page, f"Deleted 1 object under {bucket}/raw/")).to_be_visible()
    assert rest.get(f"/files/buckets/{bucket}/objects").json()["objects"] == []

    # The empty bucket goes too.
    page.get_by_role("link", name="Buckets").click()
    page.get_by_role("button", name=f"Delete bucket {bucket}").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete bucket").click()
    expect(page.get_by_role("link", name=bucket, exact=True)).to_have_count(0)


def test_a_bucket_that_holds_objects_is_not_deleted(page, rest: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    bucket = _bucket()
    rest.post("/files/buckets", json={"name": bucket}).raise_for_status()
    rest.put(f"/files/buckets/{bucket}/objects/a.txt", content=b"a").raise_for_status()
    page.goto("/files")
    page.get_by_role("button", name=f"Delete bucket {bucket}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("only an empty bucket can be deleted")
    dialog.get_by_role("button", name="Delete bucket").click()
    # The API's own message, in the dialog; the bucket stays.
    expect(dialog.get_by_role("alert")).to_contain_text("holds 1 object(s)")
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("link", name=bucket, exact=True)).to_be_visible()


def test_paging_drop_and_a_phone_screen(phone_page, rest: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    page = phone_page
    bucket = _bucket()
    rest.post("/files/buckets", json={"name": bucket}).raise_for_status()
    for name in ("a.csv", "b.csv", "c.csv", "my docs/read me.md"):
        rest.put(f"/files/buckets/{bucket}/objects/{name}",
                 content=b"x,y\n1,2\n").raise_for_status()
    # Two entries a page (in byte order of the keys), then the rest on "Load more".
    page.goto(f"/files/{bucket}?limit=2")
    listing = page.get_by_role("region", name=f"Objects in {bucket}/")
    expect(listing.get_by_role("button", name=re.compile(r"\.csv: details"))).to_have_count(2)
    expect(listing.get_by_role("link", name="my docs/")).to_have_count(0)
    page.get_by_role("button", name="Load more").click()
    expect(listing.get_by_role("button", name=re.compile(r"\.csv: details"))).to_have_count(3)
    expect(listing.get_by_role("link", name="my docs/")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1

    # A file dropped on the listing is uploaded to the prefix shown (a name with a space: the
    # URL holds it encoded).
    listing.get_by_role("link", name="my docs/").click()
    expect(page).to_have_url(re.compile(rf"/files/{bucket}/my%20docs/$"))
    transfer = page.evaluate_handle("""() => {
        const transfer = new DataTransfer();
        transfer.items.add(new File(["dropped bytes"], "dropped.txt", { type: "text/plain" }));
        return transfer;
    }""")
    zone = page.get_by_role("region", name=f"Objects in {bucket}/my docs/")
    zone.dispatch_event("dragenter", {"dataTransfer": transfer})
    zone.dispatch_event("drop", {"dataTransfer": transfer})
    expect(page.get_by_role("progressbar", name="Upload of my docs/dropped.txt")).to_have_attribute(
        "aria-valuenow", "100")
    expect(zone.get_by_role("button", name="dropped.txt: details")).to_be_visible()
    expect(zone.get_by_role("button", name="read me.md: details")).to_be_visible()
    got = rest.get(f"/files/buckets/{bucket}/objects/my docs/dropped.txt")
    assert got.content == b"dropped bytes" and got.headers["content-type"].startswith("text/plain")
