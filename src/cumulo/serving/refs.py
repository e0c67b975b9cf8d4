"""Model references: ``NAME:VERSION``, ``NAME@ALIAS`` or ``NAME`` (its latest version)."""

from __future__ import annotations

from typing import Any

from cumulo.errors import Invalid, NotFound

__all__ = ["resolve_model"]


def resolve_model(registry: Any, ref: str) -> tuple[str, str]:
    """``NAME:VERSION``, ``NAME@ALIAS`` or ``NAME`` to a model name and version."""
    if "@" in ref:
        name, alias = ref.split("@", 1)
        aliases = registry.get(name)["aliases"]
        if alias not in aliases:
            raise NotFound(f"model {name!r} has no alias {alias!r}; its aliases: "
                           f"{', '.join(sorted(aliases)) or 'none'}")
        return name, str(aliases[alias])
    if ":" in ref:
        name, version = ref.rsplit(":", 1)
        if not version.isdigit():
            raise Invalid(f"model {ref!r}: the version after ':' must be a number, like "
                          f"{name}:3")
        registry.version(name, version)  # NotFound names what exists
        return name, version
    latest = registry.get(ref)["latest_version"]
    if latest is None:
        raise NotFound(f"model {ref!r} has no versions yet")
    return ref, str(latest)
