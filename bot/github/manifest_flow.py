"""The pure parts of creating the GitHub App from its manifest (GitHub's "registering a
GitHub App from a manifest" flow): the manifest made from app.yml for this install, where
to post it, the setup link's signature, the `state` of one round trip, and what GitHub's
conversion answer must hold. No I/O but reading app.yml; bot/github/manifest.py serves it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import yaml
from pydantic import SecretStr

from pipeline import setting_checks
from pipeline.app_credentials import AppCredentials, derived_key
from pipeline.settings import Settings

# app.yml sits at the top of the source tree, next to the two packages; an installed
# distribution may carry it as data (sys.prefix/share/click-deploy/app.yml).
_SOURCE_MANIFEST = Path(__file__).resolve().parents[2] / "app.yml"
_INSTALLED_MANIFEST = Path(sys.prefix) / "share" / "click-deploy" / "app.yml"
MANIFEST_FILE = _SOURCE_MANIFEST if _SOURCE_MANIFEST.exists() else _INSTALLED_MANIFEST
SETUP_PATH = "/github/setup"
CALLBACK_PATH = "/github/setup/callback"
WEBHOOK_PATH = "/webhooks/github"
STATE_COOKIE = "click_deploy_github_setup"
STATE_SECONDS = 3600  # GitHub's code lasts an hour too
# A GitHub account or organization name.
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
# The temporary code GitHub puts in the redirect (hex today; a little room for change).
_CODE = re.compile(r"[A-Za-z0-9_-]{1,200}")
# What the manifest may carry (GitHub's list of manifest parameters); app.yml's others are
# refused rather than sent, so a typo there is found here and not on GitHub's page.
MANIFEST_KEYS = frozenset(
    {
        "name",
        "url",
        "hook_attributes",
        "redirect_url",
        "callback_urls",
        "setup_url",
        "description",
        "public",
        "default_events",
        "default_permissions",
        "request_oauth_on_install",
        "setup_on_update",
    }
)


class ManifestError(Exception):
    """app.yml cannot be made into a manifest; the message says what to fix."""


def _base(settings: Settings) -> str:
    return settings.public_url.rstrip("/")


def load_manifest(settings: Settings, path: Path = MANIFEST_FILE) -> dict[str, Any]:
    """app.yml with this install's URLs: the webhook at PUBLIC_URL/webhooks/github, and
    GitHub sends the browser back to PUBLIC_URL/github/setup/callback."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ManifestError(f"cannot read the App manifest {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ManifestError(f"the App manifest {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ManifestError(f"the App manifest {path} must be a mapping with a name")
    unknown = sorted(set(data) - MANIFEST_KEYS)
    if unknown:
        raise ManifestError(
            f"the App manifest {path} has keys GitHub does not take: {', '.join(unknown)}"
        )
    hook = data.get("hook_attributes") or {}
    if not isinstance(hook, dict):
        raise ManifestError(f"hook_attributes in {path} must be a mapping")
    data["hook_attributes"] = {**hook, "url": _base(settings) + WEBHOOK_PATH, "active": True}
    data["redirect_url"] = _base(settings) + CALLBACK_PATH
    data.setdefault("url", _base(settings))
    return data


def valid_organization(name: str) -> bool:
    return bool(_LOGIN.fullmatch(name))


def valid_code(code: str) -> bool:
    return bool(_CODE.fullmatch(code))


def new_app_url(settings: Settings, organization: str | None, state: str) -> str:
    """GitHub's page that takes a manifest: for the signed-in account, or an organization."""
    base = settings.github_url.rstrip("/")
    if organization:
        page = f"{base}/organizations/{quote(organization)}/settings/apps/new"
    else:
        page = f"{base}/settings/apps/new"
    return f"{page}?{urlencode({'state': state})}"


def install_url(settings: Settings, slug: str) -> str:
    return f"{settings.github_url.rstrip('/')}/apps/{quote(slug)}/installations/new"


def public_url_unreachable(settings: Settings) -> bool:
    """PUBLIC_URL names this machine only: GitHub could not deliver webhooks to it."""
    host = (urlsplit(settings.public_url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _mac(key: bytes, text: str, length: int) -> str:
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:length]


def link_signature(settings: Settings) -> str:
    """The `s` of the setup link: only who can read the server's log (or SECRETS_KEY) can
    open the page, so no passer-by registers their own App with this bot."""
    return _mac(derived_key(settings, "github-setup link"), SETUP_PATH, 32)


def setup_link(settings: Settings) -> str:
    return f"{_base(settings)}{SETUP_PATH}?{urlencode({'s': link_signature(settings)})}"


def link_matches(settings: Settings, given: str | None) -> bool:
    if not given:
        return False
    expected = link_signature(settings).encode()
    return hmac.compare_digest(expected, given.encode("utf-8", "surrogateescape"))


@dataclass(frozen=True)
class State:
    """One round trip to GitHub: `value` goes in the URL, `nonce` in this browser's cookie."""

    value: str
    nonce: str


def new_state(settings: Settings, now: float | None = None) -> State:
    expires = int(now if now is not None else time.time()) + STATE_SECONDS
    nonce = secrets.token_urlsafe(18)
    body = f"{expires}.{nonce}"
    return State(f"{body}.{_mac(derived_key(settings, 'github-setup state'), body, 43)}", nonce)


def state_matches(
    settings: Settings, value: str | None, cookie: str | None, now: float | None = None
) -> bool:
    """`value` came from new_state here, within the hour, for the browser holding `cookie`."""
    if not value or not cookie:
        return False
    expires, _dot, rest = value.partition(".")
    nonce, _dot, mac = rest.partition(".")
    if not expires.isdigit() or not nonce or not mac:
        return False
    expected = _mac(derived_key(settings, "github-setup state"), f"{expires}.{nonce}", 43)
    signed = hmac.compare_digest(expected.encode(), mac.encode("utf-8", "surrogateescape"))
    same_browser = hmac.compare_digest(
        nonce.encode("utf-8", "surrogateescape"), cookie.encode("utf-8", "surrogateescape")
    )
    current = now if now is not None else time.time()
    return signed and same_browser and current <= int(expires)


def parse_conversion(data: Any) -> AppCredentials:
    """GitHub's answer to POST /app-manifests/{code}/conversions; ValueError naming what is
    missing (never a secret's value)."""
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")

    def text(key: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise ValueError(f"the answer has no {key}")
        return value

    app_id = data.get("id")
    if not isinstance(app_id, int) or isinstance(app_id, bool) or app_id <= 0:
        raise ValueError("the answer has no App id")
    owner = data.get("owner")
    login = owner.get("login") if isinstance(owner, dict) else None
    pem = text("pem")
    try:
        setting_checks.check_github_private_key(pem)
    except ValueError as error:
        raise ValueError(f"the App's private key {error}") from None
    return AppCredentials(
        app_id=app_id,
        slug=text("slug"),
        name=text("name"),
        owner=login if isinstance(login, str) else "",
        html_url=text("html_url"),
        client_id=text("client_id"),
        private_key=SecretStr(pem),
        webhook_secret=SecretStr(text("webhook_secret")),
        client_secret=SecretStr(text("client_secret")),
    )
