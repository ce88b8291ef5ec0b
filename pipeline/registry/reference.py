"""Image references, pure: parse and format `host[:port]/path/name[:tag][@digest]`.

The grammar is distribution's (`distribution/reference`) and the OCI distribution spec's:
repository path components are lowercase letters and digits joined by `.`, `_`, `__` or
dashes; a tag is 1 to 128 of `[A-Za-z0-9_.-]`, not starting with `.` or `-`; a digest is
`algorithm:hex`. Nothing here normalizes (no implied `docker.io/library/`): a reference
without a registry part simply has `registry=None`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from pipeline.registry.errors import InvalidReference

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[[0-9a-fA-F:]+\]"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

REPOSITORY_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
DOMAIN_RE = re.compile(_DOMAIN)
TAG_RE = re.compile(_TAG)
DIGEST_RE = re.compile(_DIGEST)
_SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")
_SHA512_RE = re.compile(r"sha512:[0-9a-f]{128}")

MAX_NAME_LENGTH = 255

TAG_RULE = "a tag is 1 to 128 letters, digits, '_', '.' and '-', and does not start with '.' or '-'"
REPOSITORY_RULE = (
    "a repository is lowercase letters and digits in '/'-separated parts, "
    "joined inside a part by '.', '_', '__' or '-'"
)


def validate_tag(tag: str) -> str:
    """The tag itself, or InvalidReference naming the rule it breaks."""
    if not TAG_RE.fullmatch(tag):
        if not tag:
            raise InvalidReference(f"an empty image tag is not valid: {TAG_RULE}")
        if len(tag) > 128:
            raise InvalidReference(
                f"image tag {tag[:40]!r}… is {len(tag)} characters long: {TAG_RULE}"
            )
        raise InvalidReference(f"{tag!r} is not a valid image tag: {TAG_RULE}")
    return tag


def validate_repository(repository: str) -> str:
    """The repository path (`project/name`, no registry host), or InvalidReference."""
    if not REPOSITORY_RE.fullmatch(repository):
        raise InvalidReference(f"{repository!r} is not a valid repository name: {REPOSITORY_RULE}")
    if len(repository) > MAX_NAME_LENGTH:
        raise InvalidReference(
            f"repository name {repository[:40]!r}… is longer than {MAX_NAME_LENGTH} characters"
        )
    return repository


def validate_digest(digest: str) -> str:
    """A content digest such as `sha256:<64 hex>`, or InvalidReference."""
    if not DIGEST_RE.fullmatch(digest):
        raise InvalidReference(f"{digest!r} is not a valid digest (algorithm:hex)")
    algorithm = digest.split(":", 1)[0]
    if algorithm == "sha256" and not _SHA256_RE.fullmatch(digest):
        raise InvalidReference(f"{digest!r} is not a valid sha256 digest (64 lowercase hex)")
    if algorithm == "sha512" and not _SHA512_RE.fullmatch(digest):
        raise InvalidReference(f"{digest!r} is not a valid sha512 digest (128 lowercase hex)")
    return digest


def is_digest(reference: str) -> bool:
    """True for `algorithm:hex` (a manifest reference that is a digest, not a tag)."""
    return ":" in reference and DIGEST_RE.fullmatch(reference) is not None


def validate_manifest_reference(reference: str) -> str:
    """What `/v2/<name>/manifests/<reference>` takes: a tag or a digest."""
    if ":" in reference:
        return validate_digest(reference)
    return validate_tag(reference)


DEFAULT_REGISTRY = "docker.io"


@dataclass(frozen=True)
class ImageReference:
    """One parsed reference. `str()` formats it back."""

    repository: str
    registry: str | None = None
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        validate_repository(self.repository)
        if self.registry is not None and not DOMAIN_RE.fullmatch(self.registry):
            raise InvalidReference(f"{self.registry!r} is not a valid registry host")
        if self.tag is not None:
            validate_tag(self.tag)
        if self.digest is not None:
            validate_digest(self.digest)
        if len(self.name) > MAX_NAME_LENGTH:
            raise InvalidReference(
                f"image name {self.name[:40]!r}… is longer than {MAX_NAME_LENGTH} characters"
            )

    @property
    def name(self) -> str:
        """`host/path/name` (or `path/name` without a registry)."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    @property
    def host(self) -> str:
        """The registry the name points at: its own host, Docker Hub's when it names none."""
        return self.registry or DEFAULT_REGISTRY

    @property
    def reference(self) -> str | None:
        """What to ask the registry for: the digest if there is one, else the tag."""
        return self.digest or self.tag

    def with_tag(self, tag: str) -> ImageReference:
        return ImageReference(self.repository, self.registry, tag=tag, digest=None)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _looks_like_registry(component: str) -> bool:
    # Docker's rule: the first component is a host if it has a dot or a port, or is
    # localhost, or has an uppercase letter (which no repository component may have).
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or component.startswith("[")
        or component != component.lower()
    )


def parse_reference(text: str) -> ImageReference:
    """Parse `host[:port]/path/name[:tag][@digest]`; InvalidReference says what is wrong."""
    if not text or text != text.strip():
        raise InvalidReference(f"{text!r} is not a valid image reference")
    remainder = text
    digest: str | None = None
    if "@" in remainder:
        remainder, digest = remainder.rsplit("@", 1)
        validate_digest(digest)
    registry: str | None = None
    first, slash, rest = remainder.partition("/")
    if slash and _looks_like_registry(first):
        if not DOMAIN_RE.fullmatch(first):
            raise InvalidReference(f"{first!r} in {text!r} is not a valid registry host")
        registry, remainder = first, rest
    tag: str | None = None
    # A ':' after the last '/' starts the tag (a port only appears in the registry part).
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not TAG_RE.fullmatch(tag):
            raise InvalidReference(f"{tag!r} in {text!r} is not a valid image tag: {TAG_RULE}")
    if not REPOSITORY_RE.fullmatch(remainder):
        raise InvalidReference(
            f"{remainder!r} in {text!r} is not a valid repository name: {REPOSITORY_RULE}"
        )
    return ImageReference(remainder, registry, tag=tag, digest=digest)


def registry_host(registry_url: str) -> str:
    """`http://localhost:5001/` → `localhost:5001`: the host part image names start with."""
    text = registry_url.strip()
    parts = urlsplit(text if "://" in text else f"//{text}")
    if parts.scheme not in ("", "http", "https"):
        raise InvalidReference(f"registry URL {registry_url!r} must be http:// or https://")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise InvalidReference(
            f"registry URL {registry_url!r} has a path; give only the scheme and host[:port]"
        )
    if parts.username is not None or parts.password is not None:
        # Never echo the URL here: it holds credentials.
        raise InvalidReference(
            "the registry URL must not contain credentials: "
            "use REGISTRY_USERNAME and REGISTRY_PASSWORD"
        )
    host = parts.netloc
    if not host or not DOMAIN_RE.fullmatch(host):
        raise InvalidReference(f"{registry_url!r} is not a valid registry URL")
    return host


def image_reference(registry_url: str, project: str, service: str, tag: str) -> str:
    """The name an image is pushed under: `host[:port]/project/service:tag`.

    `image_reference("http://localhost:5001", "click-deploy", "web", "abc123")`
    is `"localhost:5001/click-deploy/web:abc123"`. An empty project leaves it out.
    """
    host = registry_host(registry_url)
    validate_tag(tag)
    project = project.strip("/")
    if project and not REPOSITORY_RE.fullmatch(project):
        raise InvalidReference(
            f"registry project {project!r} cannot be part of an image name: {REPOSITORY_RULE}"
        )
    if not REPOSITORY_RE.fullmatch(service):
        raise InvalidReference(
            f"service name {service!r} cannot be part of an image name: {REPOSITORY_RULE}"
        )
    repository = f"{project}/{service}" if project else service
    return str(ImageReference(repository, host, tag=tag))
