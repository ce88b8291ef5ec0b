"""Checks of single setting values that need no I/O, used by `Settings`' validators.

Each returns the value (cleaned) or raises ValueError with a message a person can act on.
Messages never quote a secret's value; `describe_validation_error` puts the variable's name
in front of them.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qsl, urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

DATABASE_URL_EXAMPLE = "postgresql://USER:PASSWORD@HOST:5432/DATABASE"
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# The repository part of an image name (the distribution spec's path components).
_REPOSITORY_PATH = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
# An image reference as BASE_IMAGE_* give it: [host[:port]/]path[:tag][@digest], "{version}"
# allowed anywhere (filled in later).
_IMAGE_REFERENCE = re.compile(r"[A-Za-z0-9._\-/:@{}]+")
_IDENTIFIER_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def _port(text: str, what: str) -> None:
    # Not quoted: a password with an unescaped '/' would be read as host and port.
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{what} must be a number from 1 to 65535")


def _host_and_port(spec: str, what: str) -> None:
    """`host`, `host:port`, `[v6]` or `[v6]:port`; an empty host is allowed (a socket
    directory may come in `?host=`)."""
    if spec.startswith("["):
        address, bracket, rest = spec[1:].partition("]")
        if not bracket or not address:
            raise ValueError(f"{what} has an unclosed '[' in its host")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{what} has text after the ']' of its host")
        if rest:
            _port(rest[1:], f"the port in {what}")
        return
    if "[" in spec or "]" in spec:
        raise ValueError(f"{what} has a '[' or ']' outside an IPv6 host")
    _host, colon, port = spec.partition(":")
    if ":" in port:
        raise ValueError(f"{what}: an IPv6 host must be written in brackets, [::1]:5432")
    if colon:
        _port(port, f"the port in {what}")


def check_database_url(url: str) -> str:
    """What asyncpg would refuse only when it connects (with a traceback): the scheme, each
    host and port, sslmode. The password is never part of a message."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        shown = scheme if sep else "none"
        raise ValueError(f"must be a PostgreSQL URL, {DATABASE_URL_EXAMPLE} (scheme: {shown})")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    hosts = authority.rpartition("@")[2]  # user:password@ in front is not looked at
    for spec in hosts.split(","):
        _host_and_port(spec, "the URL")
    query = rest.partition("?")[2].partition("#")[0]
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "sslmode" and value not in SSL_MODES:
            raise ValueError(f"sslmode must be one of {', '.join(SSL_MODES)} (got {value!r})")
        if key == "port":
            for item in value.split(","):
                _port(item, "the port in the URL")
    return url.strip()


def check_http_url(url: str, example: str) -> str:
    """An http(s) URL with a host (and a valid port, if any)."""
    value = url.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as error:  # an unclosed '[' or a port that is no number
        raise ValueError(f"is not a valid URL ({error}), e.g. {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or "://" not in value:
        # Only the scheme is quoted: a URL may carry a password.
        scheme = parts.scheme if "://" in value else "none"
        raise ValueError(f"must be an http:// or https:// URL, e.g. {example} (scheme: {scheme})")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials in the URL (use the settings for them)")
    return value


def check_registry_project(project: str) -> str:
    """It becomes part of every image name: lower-case words joined by '.', '_', '-', '/'."""
    if not _REPOSITORY_PATH.fullmatch(project):
        raise ValueError(
            "must be an image repository path: lower-case letters, digits and . _ - "
            f"between them, parts separated by / (got {project!r})"
        )
    return project


def check_pipeline_name(name: str) -> str:
    module, colon, attribute = name.partition(":")
    if not colon or not _IDENTIFIER_PATH.fullmatch(module) or not attribute.isidentifier():
        raise ValueError(
            f"must be module:factory, e.g. pipeline.deploy:deploy_pipeline (got {name!r})"
        )
    return name


def check_github_private_key(pem: str) -> str:
    """The App's private key as PEM text (GitHub signs nothing else). A path or anything
    that is not an RSA private key is refused; the value is never shown."""
    text = pem.strip()
    if "-----BEGIN" not in text:
        hint = " (it looks like a file path)" if "/" in text and "\n" not in text else ""
        raise ValueError(
            "must be the PEM text of the App's private key, not a file name"
            f'{hint}: set it to the file\'s contents, e.g. GITHUB_PRIVATE_KEY="$(cat app.pem)"'
        )
    try:
        key = load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        reason = "it is encrypted" if isinstance(error, TypeError) else "it does not parse"
        raise ValueError(f"is not a usable PEM private key ({reason})") from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("must be an RSA private key (GitHub Apps sign with RS256)")
    return pem


def check_image_reference(value: str, *, mirror: bool = False) -> str:
    """A base image (or, with `mirror`, a registry prefix) as a FROM line takes it."""
    text = value.strip()
    if mirror:
        for scheme in ("https://", "http://"):
            text = text.removeprefix(scheme)
    elif "://" in text:
        raise ValueError(f"must be an image reference, without a scheme (got {value!r})")
    if not text or not _IMAGE_REFERENCE.fullmatch(text) or "//" in text:
        example = "harbor.example.com/dockerhub" if mirror else "node:{version}-bookworm-slim"
        raise ValueError(f"must be an image reference, e.g. {example} (got {value!r})")
    if mirror and (":" in text.partition("/")[2] or "@" in text):
        raise ValueError(f"must be a registry and path prefix, without a tag (got {value!r})")
    return value


FERNET_KEY_HINT = "make one with: openssl rand -base64 32 | tr '+/' '-_'"


def check_fernet_keys(value: str) -> str:
    """One Fernet key, or several comma-separated (the first encrypts, all decrypt): each
    32 bytes in URL-safe base64. Which one is wrong is said by position, never by value."""
    keys = [key.strip() for key in value.split(",")]
    for position, key in enumerate(keys, start=1):
        try:
            raw = base64.urlsafe_b64decode(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raw = b""
        if len(raw) != 32 or not key:
            which = f"key {position} of {len(keys)}" if len(keys) > 1 else "the key"
            raise ValueError(
                f"{which} is not a Fernet key (32 bytes, URL-safe base64); {FERNET_KEY_HINT}"
            )
    return ",".join(keys)
