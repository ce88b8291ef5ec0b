"""An OCI distribution registry client (Harbor, distribution, any v2 registry).

Pure parts: `reference` (image names), `auth` (challenges, tokens), `errors` (status →
typed error), `manifest` (media types, digests, descriptors). Transport: `client`.
"""

from pipeline.registry.auth import (
    Challenge,
    Token,
    TokenCache,
    parse_token_response,
    parse_www_authenticate,
)
from pipeline.registry.client import RegistryClient
from pipeline.registry.errors import (
    ImmutableTag,
    InvalidReference,
    RegistryAuthError,
    RegistryError,
    RegistryFailure,
    RegistryForbidden,
    RegistryNotFound,
    RegistryUnavailable,
    error_for_status,
)
from pipeline.registry.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    digest_of,
)
from pipeline.registry.reference import (
    ImageReference,
    image_reference,
    parse_reference,
    registry_host,
    validate_tag,
)

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "MANIFEST_MEDIA_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Challenge",
    "Descriptor",
    "ImageReference",
    "ImmutableTag",
    "InvalidReference",
    "Manifest",
    "RegistryAuthError",
    "RegistryClient",
    "RegistryError",
    "RegistryFailure",
    "RegistryForbidden",
    "RegistryNotFound",
    "RegistryUnavailable",
    "Token",
    "TokenCache",
    "digest_of",
    "error_for_status",
    "image_reference",
    "parse_reference",
    "parse_token_response",
    "parse_www_authenticate",
    "registry_host",
    "validate_tag",
]
