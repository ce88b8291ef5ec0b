"""The HTML of /github/setup and its callback: one small page each, no script, nothing
loaded from elsewhere. Every value shown is escaped."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from aiohttp import web

STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;"
    "color:#1f2328}h1{font-size:1.5rem}code{background:#f3f4f6;padding:0 .25rem}"
    "button{font:inherit;padding:.4rem 1rem;cursor:pointer}.note{color:#59636e}"
    ".warn{background:#fff8c5;padding:.5rem .75rem}input{font:inherit}"
)


def page(
    status: int,
    title: str,
    paragraphs: list[str],
    *,
    form_action: str = "",
    body_html: str = "",
) -> web.Response:
    """A page whose `paragraphs` are plain text (escaped here); `body_html` is markup built
    by this module's functions. The CSP lets forms post only here and to `form_action`."""
    text = "".join(f"<p>{escape(line)}</p>" for line in paragraphs)
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)} · click-deploy</title><style>{STYLE}</style></head>"
        f"<body><h1 id=title>{escape(title)}</h1><div id=message>{text}</div>{body_html}"
        "</body></html>"
    )
    forms = " ".join(filter(None, ["'self'", form_action]))
    headers = {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'unsafe-inline'; form-action {forms}; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
        # The link's signature and GitHub's code are in the URL: never send it on.
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return web.Response(
        status=status, text=html, content_type="text/html", charset="utf-8", headers=headers
    )


def setup_form(
    manifest: dict[str, Any],
    post_to: str,
    signature: str,
    organization: str | None,
    warning: str | None,
) -> str:
    """The manifest form GitHub takes, and a small form to pick an organization."""
    account = f"the organization {organization}" if organization else "your GitHub account"
    warn = f"<p class=warn id=warning>{escape(warning)}</p>" if warning else ""
    events = ", ".join(str(event) for event in manifest.get("default_events") or [])
    permissions = ", ".join(
        f"{name}: {level}" for name, level in (manifest.get("default_permissions") or {}).items()
    )
    return (
        f"{warn}<p>The App is created for <b id=account>{escape(account)}</b>. GitHub shows "
        "what it asks for and lets you change its name before it is created; then GitHub "
        "sends you back here and click-deploy keeps the App's keys (encrypted).</p>"
        f"<p class=note>Webhook: <code>{escape(manifest['hook_attributes']['url'])}</code><br>"
        f"Events: {escape(events)}<br>Permissions: {escape(permissions)}</p>"
        f'<form id=create method=post action="{escape(post_to)}">'
        f'<input type=hidden name=manifest value="{escape(json.dumps(manifest))}">'
        "<button type=submit>Create the GitHub App</button></form>"
        '<form id=organization method=get action="" style="margin-top:2rem">'
        f'<input type=hidden name=s value="{escape(signature)}">'
        "<label>For an organization instead: <input name=organization "
        f'value="{escape(organization or "")}" placeholder=acme></label> '
        "<button type=submit>Use it</button></form>"
    )


def install_link(url: str) -> str:
    return f'<p><a id=install href="{escape(url)}">Install the App on your repositories</a></p>'
