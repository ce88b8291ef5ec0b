"""Base images of generated Dockerfiles: official names, through an optional mirror.

`BASE_IMAGE_MIRROR=harbor.example.com/dockerhub` turns `node:18-bookworm-slim` (that is,
`docker.io/library/node:18-bookworm-slim`) into
`harbor.example.com/dockerhub/library/node:18-bookworm-slim`, and `oven/bun:1-slim` into
`harbor.example.com/dockerhub/oven/bun:1-slim`. `BASE_IMAGE_<KIND>` replaces
one image outright; `{version}` in it is filled with the detected version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from pipeline.settings import Settings

ImageKind = Literal[
    "node", "bun", "python", "golang", "php", "composer", "ruby", "caddy", "runtime"
]  # fmt: skip

IMAGE_KINDS: tuple[ImageKind, ...] = (
    "node", "bun", "python", "golang", "php", "composer", "ruby", "caddy", "runtime",
)  # fmt: skip

# Official repository, tag template, and the version used when a kind has none of its own.
_OFFICIAL: dict[ImageKind, tuple[str, str, str | None]] = {
    "node": ("library/node", "{version}-bookworm-slim", None),
    "bun": ("oven/bun", "{version}-slim", "1"),  # not a library image: oven/bun keeps its owner
    # The official tags without a Debian release: the one the official images build on.
    "python": ("library/python", "{version}-slim", None),
    "golang": ("library/golang", "{version}-bookworm", None),
    "php": ("library/php", "{version}-cli", None),
    "composer": ("library/composer", "{version}", "2"),
    "ruby": ("library/ruby", "{version}-slim-bookworm", None),
    "caddy": ("library/caddy", "{version}", "2"),
    "runtime": ("library/debian", "{version}", "bookworm-slim"),
}


def _clean_mirror(mirror: str | None) -> str | None:
    if mirror is None or not mirror.strip():
        return None
    value = mirror.strip()
    for scheme in ("https://", "http://"):
        value = value.removeprefix(scheme)
    return value.rstrip("/") or None


@dataclass(frozen=True)
class BaseImages:
    mirror: str | None = None
    overrides: Mapping[ImageKind, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mirror", _clean_mirror(self.mirror))
        cleaned = {kind: value for kind, value in self.overrides.items() if value}
        object.__setattr__(self, "overrides", MappingProxyType(cleaned))

    @classmethod
    def from_settings(cls, settings: Settings) -> BaseImages:
        overrides: dict[ImageKind, str] = {}
        for kind in IMAGE_KINDS:
            value = getattr(settings, f"base_image_{kind}")
            if value:
                overrides[kind] = value
        return cls(mirror=settings.base_image_mirror, overrides=overrides)

    def image(self, kind: ImageKind, version: str | None = None) -> str:
        """The image reference for `kind` at `version` (the kind's fixed tag if it has one:
        composer 2, caddy 2, debian bookworm-slim)."""
        repository, template, fixed = _OFFICIAL[kind]
        filled = version if version is not None else fixed
        if filled is None:
            raise ValueError(f"the {kind} image needs a version")
        override = self.overrides.get(kind)
        if override:
            return override.replace("{version}", filled)
        tag = template.replace("{version}", filled)
        if self.mirror:
            return f"{self.mirror}/{repository}:{tag}"
        return f"{repository.removeprefix('library/')}:{tag}"

    def is_overridden(self, kind: ImageKind) -> bool:
        return kind in self.overrides
