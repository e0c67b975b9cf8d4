"""The Backups page against a real server: a schedule made in its dialog (a target the server
cannot use refused there), a backup run from the page and listed with its size, one bucket of it
restored under another name; a schedule whose target went bad shown failing there and on Home."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import httpx
from playwright.sync_api import expect

from tests.services import Cumulo

BACKUP_TIMEOUT = 180_000  # ms: a backup reads the whole home of the shared server


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _schedule_row(page, name: str):  # type: ignore[no-untyped-def]
    return page.get_by_role("table", name="Backup schedules").get_by_role("row").filter(
        has=page.get_by_role("button", name=name, exact=True))


def _open_backups(page) -> None:  # type: ignore[no-untyped-def]
    """The Backups page, through the menu (under Administration)."""
    page.goto("/")
    page.get_by_role("navigation", name="Services").get_by_role("link", name="Backups").click()
    expect(page.get_by_role("heading", name="Backups", exact=True)).to_be_visible()


def _last_run(page, name: str):  # type: ignore[no-untyped-def]
    return page.get_by_role("table", name="Backup runs").get_by_role("row").filter(
        has_text=name).first


def test_back_up_from_the_page_and_restore_one_bucket_as_another(  # type: ignore[no-untyped-def]
        page, console_server: Cumulo, rest: httpx.Client, tmp_path: Path, shot) -> None:
    c = console_server.client()
    name = _unique("nightly")
    bucket, copy = _unique("precious"), _unique("precious-back")
    c.files.create_bucket(bucket)
    c.files.upload(b"first", f"{bucket}/a.txt")
    c.files.upload(b"second", f"{bucket}/sub/b.txt")
    target = tmp_path / "backups"
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    try:
        _open_backups(page)
        page.get_by_role("button", name="New schedule").click()
        dialog = page.get_by_role("dialog", name="New backup schedule")
        dialog.get_by_label("Name", exact=True).fill(name)
        expect(dialog.get_by_label("Cron")).to_have_value("0 2 * * *")
        dialog.get_by_label("Drill each new backup").uncheck()
        # A target the server cannot write is refused now, with the API's message, in the dialog.
        dialog.get_by_label("Target folder").fill(str(in_the_way / "backups"))
        dialog.get_by_role("button", name="Create schedule").click()
        expect(dialog.get_by_role("alert")).to_contain_text("cannot use")
        assert name not in {s["name"] for s in rest.get("/backups/schedules").json()}
        dialog.get_by_label("Target folder").fill(str(target))
        dialog.get_by_role("button", name="Create schedule").click()
        expect(dialog).to_be_hidden()
        row = _schedule_row(page, name)
        expect(row).to_contain_text(str(target))
        expect(row).to_contain_text("none yet")

        row.get_by_role("button", name="Back up now").click()
        run = _last_run(page, name)
        expect(run).to_contain_text("succeeded", timeout=BACKUP_TIMEOUT)
        made = rest.get(f"/backups/schedules/{name}/backups").json()
        assert len(made) == 1
        backup = made[0]["id"]
        expect(run).to_contain_text(backup)
        # The schedule's last backup follows, with its size: new / total.
        expect(row).to_contain_text(re.compile(r"succeeded.*[\d.]+ [KMG]?B new / [\d.]+ [KMG]?B"))
        listed = page.get_by_role("table", name=f"Backups of {name}").get_by_role("row").filter(
            has_text=backup)
        expect(listed).to_contain_text(re.compile(r"[\d.]+ [KMG]?B"))

        # Open it: what it holds, and the bucket put back under another name.
        listed.get_by_role("button", name=backup).click()
        expect(page).to_have_url(re.compile(rf"backup={backup}"))
        held = page.get_by_role("table", name="Buckets in the backup").get_by_role("row").filter(
            has_text=bucket)
        expect(held).to_contain_text("2")
        shot(page, "backups")
        held.get_by_role("button", name=f"Restore bucket {bucket}…").click()
        dialog = page.get_by_role("dialog", name=f"Restore bucket {bucket}")
        expect(dialog.get_by_label("Restore as")).to_have_value(bucket)
        dialog.get_by_label("Restore as").fill(copy)
        dialog.get_by_role("button", name="Restore").click()
        expect(dialog).to_be_hidden(timeout=60_000)
        notice = page.get_by_role("status").filter(has_text="Restored")
        expect(notice).to_contain_text(f"Restored 2 object(s) into bucket {copy}")
        expect(notice.get_by_role("link", name=copy)).to_have_attribute("href", f"/files/{copy}")
        assert c.files.read_bytes(f"{copy}/a.txt") == b"first"
        assert c.files.read_bytes(f"{copy}/sub/b.txt") == b"second"
        assert c.files.read_bytes(f"{bucket}/a.txt") == b"first"  # the original untouched

        # A drill: a new backup, restored into a scratch home and checked; its RPO and RTO.
        row.get_by_role("button", name="Drill now").click()
        drill = page.get_by_role("table", name="Backup runs").get_by_role("row").filter(
            has_text=name).filter(has_text="drill").first
        expect(drill).to_contain_text("succeeded", timeout=BACKUP_TIMEOUT)
        expect(drill).to_contain_text(re.compile(r"RPO [\d.]+ (ms|s|min)"))
        expect(row).to_contain_text(re.compile(
            r"succeeded.*RPO [\d.]+ (ms|s|min).* · RTO [\d.]+ (ms|s|min)"))
        # Keep daily (7 by default in the dialog) keeps one backup a day: the first one is pruned.
        newest = rest.get(f"/backups/schedules/{name}/backups").json()
        assert [b["id"] for b in newest] != [backup] and len(newest) == 1
        expect(page.get_by_role("table", name="Backup runs").get_by_role("row").filter(
            has_text=newest[0]["id"]).filter(has_text="pruned 1")).to_have_count(1)
        rows = page.get_by_role("table", name=f"Backups of {name}").get_by_role("row")
        expect(rows.filter(has_text=newest[0]["id"])).to_have_count(1)
        expect(rows.filter(has_text=backup)).to_have_count(0)
        shot(page, "backups-runs")

        # Home says when the last backup was made, and how the last drill went.
        page.goto("/")
        card = page.locator(".home-cards").get_by_role("link", name=re.compile(r"^Last backup"))
        expect(card).to_have_accessible_name(re.compile(r"^Last backup: (just now|\d+ min ago)$"))
        expect(card).to_contain_text(re.compile(r"last drill RPO"))
    finally:
        rest.delete(f"/backups/schedules/{name}")


def test_a_failing_schedule_shows_on_the_page_and_on_home(  # type: ignore[no-untyped-def]
        page, console_server: Cumulo, rest: httpx.Client, tmp_path: Path, shot) -> None:
    name = _unique("doomed")
    target = tmp_path / "backups"
    rest.post("/backups/schedules", json={"name": name, "target": str(target),
                                          "cron": "0 3 * * *"}).raise_for_status()
    # The folder becomes a file after the schedule was made: the next backup cannot be written.
    shutil.rmtree(target)
    target.write_text("in the way")
    try:
        _open_backups(page)
        row = _schedule_row(page, name)
        row.get_by_role("button", name="Back up now").click()
        run = _last_run(page, name)
        expect(run).to_contain_text("failed", timeout=BACKUP_TIMEOUT)
        error = rest.get("/backups/runs", params={"schedule": name}).json()[0]["error"]
        assert error
        expect(run).to_contain_text(error)
        marker = row.get_by_text("failing", exact=True)
        expect(marker).to_be_visible()
        expect(marker).to_have_attribute("title", error)
        marker.click()
        expect(row).to_contain_text(error)
        shot(page, "backups-failing")

        page.goto("/")
        warning = page.get_by_role("alert", name="Backups failing")
        expect(warning).to_contain_text(f"The last backup of schedule {name} failed")
        expect(warning).to_contain_text(error)
        shot(page, "home-backups-failing")
        warning.get_by_role("link", name=name).click()
        expect(page).to_have_url(re.compile(rf"/backups\?schedule={name}$"))

        # Deleted through its dialog: gone from the page and from Home's warning.
        row = _schedule_row(page, name)
        row.get_by_role("button", name="Delete").click()
        page.get_by_role("dialog", name=f"Delete schedule {name}?").get_by_role(
            "button", name="Delete schedule").click()
        expect(row).to_have_count(0)
        assert name not in {s["name"] for s in rest.get("/backups/schedules").json()}
        page.goto("/")
        expect(page.locator(".home-cards")).to_be_visible()
        expect(page.get_by_role("alert", name="Backups failing")).to_have_count(0)
    finally:
        rest.delete(f"/backups/schedules/{name}")
