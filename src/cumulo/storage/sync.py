"""``files sync``: make a bucket prefix hold what a local folder holds, or the other way round,
as ``aws s3 sync`` does.

A file is copied when the destination lacks it, or when its size or its SHA-256 differs (aws
compares sizes and times; every Cumulo object carries its SHA-256, so equal sizes are settled
by content, hashing the local file only then). ``delete`` removes what the destination holds
and the source does not. Exclude and include rules are glob patterns over the path relative to
the source (``*`` crosses ``/``); every path is included until a rule matches it, and the last
rule that matches decides, as in aws. What a rule leaves out is neither copied nor deleted.

Planning only reads (listings, local files); nothing changes until :func:`apply` carries the
plan out, so a missing bucket or a key the server would refuse stops a sync before any copy.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cumulo.errors import Invalid
from cumulo.storage.keys import split_path, validate_key

if TYPE_CHECKING:
    from cumulo.storage.sdk import FilesClient, ObjectInfo

__all__ = ["Action", "Rule", "SyncPlan", "Why", "apply", "included", "plan", "sha256_of"]

Rule = tuple[Literal["exclude", "include"], str]
Why = Literal["new", "size differs", "content differs", "not in the source"]
Place = str | os.PathLike[str]
# What a download in flight is called (sdk.FilesClient.download): never synced or deleted.
_PARTIAL = ".cumulo-partial"


@dataclass(frozen=True)
class Action:
    """One step of a sync: a copy of ``source`` to ``dest``, or a delete of ``dest``."""

    op: Literal["upload", "download", "delete"]
    path: str  # relative to both sides
    source: str | None
    dest: str
    size: int
    why: Why


@dataclass
class SyncPlan:
    """What a sync does (or, with ``dryrun``, would do), and how far it got."""

    source: str
    dest: str
    direction: Literal["upload", "download"]
    actions: list[Action] = field(default_factory=list)
    unchanged: int = 0
    dryrun: bool = False
    done: int = 0  # actions carried out

    @property
    def copies(self) -> list[Action]:
        return [a for a in self.actions if a.op != "delete"]

    @property
    def deletes(self) -> list[Action]:
        return [a for a in self.actions if a.op == "delete"]

    @property
    def bytes(self) -> int:
        """Bytes the copies move."""
        return sum(a.size for a in self.copies)


def included(path: str, rules: Sequence[Rule]) -> bool:
    """Whether ``path`` takes part: the last rule that matches it decides; none: it does."""
    keep = True
    for kind, pattern in rules:
        if fnmatchcase(path, pattern):
            keep = kind == "include"
    return keep


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _check_rules(rules: Iterable[Rule]) -> list[Rule]:
    checked = list(rules)
    for kind, pattern in checked:
        if kind not in ("exclude", "include") or not isinstance(pattern, str) or not pattern:
            raise Invalid(f"a filter is ('exclude' or 'include', PATTERN), e.g. ('exclude', "
                          f"'*.tmp'); got ({kind!r}, {pattern!r})")
    return checked


def _prefix(path: str) -> tuple[str, str]:
    """``bucket/some/prefix`` -> (``bucket``, ``some/prefix/``): a sync's remote side is a
    folder, whether or not it is written with its trailing ``/``."""
    bucket, key = split_path(path)
    return bucket, key if not key or key.endswith("/") else key + "/"


def _local_files(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if name.endswith(_PARTIAL) or not path.is_file():
                continue
            found[path.relative_to(root).as_posix()] = path
    return found


def _objects(files: FilesClient, bucket: str, prefix: str) -> dict[str, ObjectInfo]:
    """Every object under the prefix by its path below it; a missing bucket is NotFound,
    whose message names it and how to make it."""
    return {o.key[len(prefix):]: o
            for page in files.pages(f"{bucket}/{prefix}", recursive=True)
            for o in page.objects}


def _why(size: int, local: Path, obj: ObjectInfo) -> Why | None:
    if obj.size != size:
        return "size differs"
    if sha256_of(local) != obj.sha256:
        return "content differs"
    return None


def plan(files: FilesClient, source: Place, dest: Place, *, delete: bool = False,
         rules: Sequence[Rule] = (), dryrun: bool = False) -> SyncPlan:
    """What syncing ``source`` to ``dest`` takes. A local folder is an ``os.PathLike``
    (a ``pathlib.Path``); a Cumulo ``BUCKET/PREFIX`` is a ``str``; one side of each."""
    rules = _check_rules(rules)
    local_src, local_dst = isinstance(source, os.PathLike), isinstance(dest, os.PathLike)
    if local_src and local_dst:
        raise Invalid(f"both {os.fspath(source)!r} and {os.fspath(dest)!r} are local folders; "
                      "one side must be a Cumulo path BUCKET/PREFIX (a str)")
    if not local_src and not local_dst:
        raise Invalid(f"both {source!r} and {dest!r} are Cumulo paths; syncing between "
                      "buckets is not supported yet: sync one to a local folder (a "
                      "pathlib.Path; on the command line ./FOLDER), then that to the other")
    if local_src:
        return _plan_upload(files, Path(os.fspath(source)).expanduser(), str(dest),
                            delete=delete, rules=rules, dryrun=dryrun)
    return _plan_download(files, str(source), Path(os.fspath(dest)).expanduser(),
                          delete=delete, rules=rules, dryrun=dryrun)


def _plan_upload(files: FilesClient, root: Path, dest: str, *, delete: bool,
                 rules: Sequence[Rule], dryrun: bool) -> SyncPlan:
    if not root.is_dir():
        raise Invalid(f"{root} is not a folder here; sync copies a folder's files (to copy one "
                      "file, use 'cumulo files cp')")
    bucket, prefix = _prefix(dest)
    local = {rel: p for rel, p in _local_files(root).items() if included(rel, rules)}
    for rel in local:  # a name the server would refuse stops the sync before anything moves
        validate_key(prefix + rel)
    remote = {rel: o for rel, o in _objects(files, bucket, prefix).items()
              if included(rel, rules)}
    out = SyncPlan(source=str(root), dest=f"{bucket}/{prefix}", direction="upload",
                   dryrun=dryrun)
    for rel, path in local.items():
        size = path.stat().st_size
        why: Why | None = "new" if rel not in remote else _why(size, path, remote[rel])
        if why is None:
            out.unchanged += 1
            continue
        out.actions.append(Action("upload", rel, str(path), f"{bucket}/{prefix}{rel}", size,
                                  why))
    if delete:
        out.actions += [Action("delete", rel, None, o.path, o.size, "not in the source")
                        for rel, o in remote.items() if rel not in local]
    return out


def _in_the_way(root: Path, rel: str) -> Path | None:
    """A local file where a folder of ``rel`` must go, or a folder where its file must go."""
    target = root / rel
    if target.is_dir():
        return target
    for parent in target.parents:
        if parent == root or root not in parent.parents:
            break
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def _plan_download(files: FilesClient, source: str, root: Path, *, delete: bool,
                   rules: Sequence[Rule], dryrun: bool) -> SyncPlan:
    if root.exists() and not root.is_dir():
        raise Invalid(f"{root} is a file; sync downloads into a folder")
    bucket, prefix = _prefix(source)
    remote = {rel: o for rel, o in _objects(files, bucket, prefix).items()
              if included(rel, rules)}
    local = {rel: p for rel, p in (_local_files(root) if root.is_dir() else {}).items()
             if included(rel, rules)}
    out = SyncPlan(source=f"{bucket}/{prefix}", dest=str(root), direction="download",
                   dryrun=dryrun)
    for rel, obj in remote.items():
        blocker = _in_the_way(root, rel)
        if blocker is not None:
            raise Invalid(f"cannot download {obj.path} to {root / rel}: {blocker} is in the "
                          "way (a file where a folder must be, or the other way round); "
                          "nothing was copied")
        why: Why | None = "new" if rel not in local else _why(local[rel].stat().st_size,
                                                              local[rel], obj)
        if why is None:
            out.unchanged += 1
            continue
        out.actions.append(Action("download", rel, obj.path, str(root / rel), obj.size, why))
    if delete:
        out.actions += [Action("delete", rel, None, str(p), p.stat().st_size,
                               "not in the source")
                        for rel, p in local.items() if rel not in remote]
    return out


def apply(files: FilesClient, todo: SyncPlan, *, progress: Callable[[int], None] | None = None,
          on_action: Callable[[Action], None] | None = None) -> SyncPlan:
    """Carry the plan out: copies first, then deletes, so that an interrupted sync has lost
    nothing the source holds. ``on_action`` hears of each step once it is done."""
    for action in todo.actions:
        if action.op == "upload":
            files.upload(Path(action.source or ""), action.dest, progress=progress)
        elif action.op == "download":
            Path(action.dest).parent.mkdir(parents=True, exist_ok=True)
            files.download(action.source or "", action.dest, progress=progress)
        elif todo.direction == "upload":
            files.delete(action.dest)
        else:
            Path(action.dest).unlink(missing_ok=True)
        todo.done += 1
        if on_action is not None:
            on_action(action)
    return todo
