"""Jupyter's contents (files) in a local folder, written through to Cumulo storage.

The notebook's launcher fills its working folder from the user's folder in storage
(``notebooks/alice/``); this contents manager works in that folder as jupyter-server's own
does, and after each save, rename and delete does the same in storage, through the API with
the job's token (objects are registered by the storage service, so they are listed in Files
and backed up). A save that cannot reach storage fails, saying so, rather than be lost at the
next stop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jupyter_server.services.contents.largefilemanager import LargeFileManager
from tornado import web
from traitlets import Unicode

__all__ = ["StorageContentsManager"]


class StorageContentsManager(LargeFileManager):
    folder = Unicode("", config=True, help="bucket/prefix/ in Cumulo storage the files are "
                     "written through to")

    _client: Any = None
    changed_at: datetime | None = None  # the last save, rename or delete: activity


    def _files(self) -> Any:
        if self._client is None:
            from cumulo.client import Client

            self._client = Client()
        return self._client.files

    def _key(self, path: str) -> str:
        return self.folder.rstrip("/") + "/" + path.strip("/")

    def _through(self, what: str, action: Any) -> None:
        if not self.folder:
            return
        try:
            action()
        except Exception as exc:
            self.log.error("cumulo: %s in storage failed: %s", what, exc)
            raise web.HTTPError(502, f"done here, but not in Cumulo storage ({what}): {exc}; "
                                "it is lost when the notebook stops unless done again") from exc

    def _put_tree(self, path: str) -> None:
        local = Path(self._get_os_path(path))  # type: ignore[no-untyped-call]
        if local.is_file():
            self._files().upload(local, self._key(path))
            return
        for item in sorted(local.rglob("*")):
            if item.is_file() and not self._hidden(item.relative_to(local)):
                rel = item.relative_to(self.root_dir).as_posix()
                self._files().upload(item, self._key(rel))

    @staticmethod
    def _hidden(rel: Path) -> bool:
        return any(part.startswith(".") for part in rel.parts)

    def _remove(self, path: str) -> None:
        files = self._files()
        key = self._key(path)
        if files.exists(key):
            files.delete(key)
        files.delete(key + "/", recursive=True)

    def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        saved: dict[str, Any] = super().save(model, path)  # type: ignore[no-untyped-call]
        self.changed_at = datetime.now(UTC)
        chunk = model.get("chunk")
        whole = chunk is None or chunk == -1  # a large upload: its last chunk
        if model.get("type") != "directory" and whole and not self._hidden(Path(path)):
            self._through(f"saving {path}", lambda: self._put_tree(path))
        return saved

    def delete_file(self, path: str) -> None:
        super().delete_file(path)  # type: ignore[no-untyped-call]
        self.changed_at = datetime.now(UTC)
        if not self._hidden(Path(path)):
            self._through(f"deleting {path}", lambda: self._remove(path))

    def rename_file(self, old_path: str, new_path: str) -> None:
        super().rename_file(old_path, new_path)  # type: ignore[no-untyped-call]
        self.changed_at = datetime.now(UTC)
        if self._hidden(Path(new_path)):
            return

        def move() -> None:
            self._put_tree(new_path)
            self._remove(old_path)

        self._through(f"renaming {old_path} to {new_path}", move)
