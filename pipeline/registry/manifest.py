"""Manifests, pure: media types, digests, and the descriptors a manifest points at."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
INDEX_MEDIA_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
ACCEPT_MANIFESTS = ", ".join(MANIFEST_MEDIA_TYPES)

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


class ManifestError(ValueError):
    """Bytes that are not a manifest this client understands."""


def digest_of(data: bytes) -> str:
    """`sha256:<hex>` of the exact bytes (a manifest's digest is that of its raw bytes)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def bare_media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` → `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class Descriptor:
    """A pointer to content: a blob (config, layer) or, in an index, a child manifest."""

    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    platform: dict[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry stores it: raw bytes (the digest covers them)."""

    digest: str
    media_type: str
    content: bytes = field(repr=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    def json(self) -> dict[str, Any]:
        return decode_manifest(self.content)

    def blobs(self) -> list[Descriptor]:
        """Config and layers of an image manifest ([] for an index)."""
        return [] if self.is_index else manifest_blobs(self.json())

    def children(self) -> list[Descriptor]:
        """Child manifests of an index ([] for an image manifest)."""
        return index_children(self.json()) if self.is_index else []


def decode_manifest(content: bytes) -> dict[str, Any]:
    try:
        document = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        raise ManifestError("the manifest is not JSON") from None
    if not isinstance(document, dict):
        raise ManifestError("the manifest is not a JSON object")
    return document


def media_type_of(content: bytes, content_type: str | None = None) -> str:
    """The manifest's media type: the response's Content-Type if it names a manifest type,
    else the document's `mediaType`, else guessed from its shape (OCI allows no mediaType)."""
    declared = bare_media_type(content_type)
    if declared in MANIFEST_MEDIA_TYPES:
        return declared
    document = decode_manifest(content)
    media_type = document.get("mediaType")
    if isinstance(media_type, str) and media_type:
        return media_type
    return OCI_INDEX if "manifests" in document else OCI_MANIFEST


def _descriptor(entry: object) -> Descriptor:
    if not isinstance(entry, dict):
        raise ManifestError("a descriptor in the manifest is not an object")
    digest = entry.get("digest")
    if not isinstance(digest, str) or not digest:
        raise ManifestError("a descriptor in the manifest has no digest")
    media_type = entry.get("mediaType")
    size = entry.get("size")
    urls = entry.get("urls")
    platform = entry.get("platform")
    return Descriptor(
        media_type=media_type if isinstance(media_type, str) else "",
        digest=digest,
        size=size if isinstance(size, int) and not isinstance(size, bool) else 0,
        urls=tuple(url for url in urls if isinstance(url, str)) if isinstance(urls, list) else (),
        platform=platform if isinstance(platform, dict) else None,
    )


def manifest_blobs(document: dict[str, Any]) -> list[Descriptor]:
    """The config and the layers of an image manifest, config first, without repeats."""
    blobs: list[Descriptor] = []
    config = document.get("config")
    if config is not None:
        blobs.append(_descriptor(config))
    layers = document.get("layers", [])
    if not isinstance(layers, list):
        raise ManifestError("the manifest's layers are not a list")
    blobs.extend(_descriptor(layer) for layer in layers)
    seen: set[str] = set()
    unique = []
    for blob in blobs:
        if blob.digest not in seen:
            seen.add(blob.digest)
            unique.append(blob)
    return unique


def index_children(document: dict[str, Any]) -> list[Descriptor]:
    """The manifests an index (or a Docker manifest list) points at."""
    manifests = document.get("manifests", [])
    if not isinstance(manifests, list):
        raise ManifestError("the index's manifests are not a list")
    return [_descriptor(entry) for entry in manifests]
