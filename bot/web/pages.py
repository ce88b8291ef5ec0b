"""The deployment and service pages: HTML from the server, the log live over SSE."""

from __future__ import annotations

from datetime import datetime
from html import escape

from aiohttp import web

from bot.api.auth import COOKIE, SETTINGS_KEY, TOKENS_KEY, presented_token
from bot.api.errors import ApiError
from bot.api.operations import MAX_ID
from bot.api.tokens import Scope
from bot.runtime import Runtime
from bot.web import signing
from bot.web.assets import CSS, SCRIPT
from pipeline.errors import NotFound
from pipeline.models import Deployment, Step
from pipeline.settings import Settings

RUNTIME = web.AppKey("pages_runtime", Runtime)


def _page(title: str, body: str, script: str = "") -> web.Response:
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main>{f'<script>{script}</script>' if script else ''}"
        "</body></html>"
    )
    return web.Response(
        text=html,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",  # signed links stay out of Referer headers
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
            "script-src 'unsafe-inline'; connect-src 'self'",
        },
    )


def _refusal(status: int, message: str) -> web.Response:
    response = _page("click-deploy", f"<h1>{escape(message)}</h1>")
    response.set_status(status)
    return response


def _id(request: web.Request) -> int | None:
    value = int(request.match_info["id"])
    return value if 1 <= value <= MAX_ID else None


async def _allowed(request: web.Request, kind: str, object_id: int) -> web.Response | None:
    """None when the visitor may see the page; otherwise the answer to give them."""
    settings = request.app[SETTINGS_KEY]
    if settings.pages_access == "link":
        if signing.verify(settings, kind, object_id, request.query.get(signing.SIGNATURE_PARAM)):
            return None
        return _refusal(404, "Not found (the link is incomplete or wrong)")
    given = request.query.get("token")
    if given is not None:  # from a link: keep it in a cookie and drop it from the URL
        found = await request.app[TOKENS_KEY].verify(given)
        if found is None:
            return _refusal(401, "Unknown or revoked token")
        response = web.HTTPSeeOther(request.path)
        # Lax: a link followed from Slack or a forge opens the page; the cookie only reads
        # (bot/api/auth.py), so a request another site makes with it changes nothing.
        secure = request.secure or settings.public_url.lower().startswith("https:")
        response.set_cookie(COOKIE, given, httponly=True, samesite="Lax", secure=secure, path="/")
        raise response
    try:
        token = presented_token(request)
        found = await request.app[TOKENS_KEY].verify(token) if token else None
    except ApiError:
        found = None
    if found is None or found.scope < Scope.READ:
        return _refusal(401, "This page needs an API token: open it with ?token=…")
    return None


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S %Z}" if moment else "-"


def _live_link(url: str | None) -> str:
    """Where the deployment's release answers, as a link (http and https only)."""
    if not url or not url.startswith(("http://", "https://")):
        return "-"
    return f'<a href="{escape(url)}">{escape(url)}</a>'


def _duration(deployment: Deployment) -> str:
    if deployment.started_at is None:
        return "-"
    end = deployment.finished_at or datetime.now().astimezone()
    return f"{(end - deployment.started_at).total_seconds():.1f} s"


def _steps_rows(steps: list[Step]) -> str:
    rows = []
    for step in steps:
        if step.kind != "pipeline":
            continue
        seconds = "…" if step.seconds is None else f"{step.seconds:.2f} s"
        rows.append(
            f"<tr><td>{escape(step.name)}</td><td>{escape(step.status)}</td><td>{seconds}</td></tr>"
        )
    return "".join(rows)


def _table(headers: list[str], rows: list[str]) -> str:
    if not rows:
        return "<p class=muted>none yet</p>"
    head = "".join(f"<th>{escape(name)}</th>" for name in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _signed(settings: Settings, kind: str, object_id: int) -> str:
    return escape(signing.signed_path(settings, kind, object_id))


async def deployment_page(request: web.Request) -> web.Response:
    deployment_id = _id(request)
    if deployment_id is None:
        return _refusal(404, "Not found")
    refused = await _allowed(request, "deployment", deployment_id)
    if refused is not None:
        return refused
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    try:
        deployment = await runtime.store.get_deployment(deployment_id)
    except NotFound:
        return _refusal(404, "Not found")
    steps = await runtime.store.list_steps(deployment_id)
    events = f"/api/v1/deployments/{deployment_id}/logs?follow=1"
    if settings.pages_access == "link":
        signature = signing.sign(settings, "deployment", deployment_id)
        events += f"&{signing.SIGNATURE_PARAM}={signature}"
    d = deployment
    progress = d.progress_message or "-"
    if d.steps_total:
        progress = f"step {d.step} of {d.steps_total}"
        progress += f": {d.progress_message}" if d.progress_message else ""
    service = escape(d.service_name or str(d.service_id))
    body = f"""
<div id=page data-events="{escape(events)}">
<h1>Deployment {d.id} of <a href="{_signed(settings, "service", d.service_id)}">{service}</a>
 <span id=status class="badge {escape(str(d.status))}">{escape(str(d.status))}</span></h1>
<dl>
<dt>environment</dt><dd>{escape(d.environment)}</dd>
<dt>ref</dt><dd>{escape(d.ref or "-")}</dd>
<dt>commit</dt><dd id=commit>{escape(d.commit_sha or "-")}</dd>
<dt>progress</dt><dd id=progress>{escape(progress)}</dd>
<dt>image</dt><dd id=image>{escape(d.image or "-")}</dd>
<dt>digest</dt><dd id=digest>{escape(d.digest or "-")}</dd>
<dt>live at</dt><dd id=live_url>{_live_link(d.live_url)}</dd>
<dt>error</dt><dd id=error>{escape(d.error or "-")}</dd>
<dt>created</dt><dd>{_when(d.created_at)}</dd>
<dt>duration</dt><dd>{_duration(d)}</dd>
</dl>
<table><thead><tr><th>step</th><th>status</th><th>took</th></tr></thead>
<tbody id=steps>{_steps_rows(steps)}</tbody></table>
<div class=toolbar><button id=pause type=button>Pause</button><span id=held class=muted></span>
</div>
<pre id=log aria-live=polite></pre>
</div>"""
    return _page(f"Deployment {d.id} · {d.service_name}", body, SCRIPT)


async def service_page(request: web.Request) -> web.Response:
    service_id = _id(request)
    if service_id is None:
        return _refusal(404, "Not found")
    refused = await _allowed(request, "service", service_id)
    if refused is not None:
        return refused
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    try:
        service = await runtime.store.get_service(service_id)
    except NotFound:
        return _refusal(404, "Not found")
    page = await runtime.store.list_deployments(service_id, limit=30)
    environments = sorted({d.environment for d in page.items} | {"production"})
    images = []
    for environment in environments:
        current = await runtime.store.current_image(service_id, environment)
        if current is not None:
            link = _signed(settings, "deployment", current.deployment_id)
            images.append(
                f"<tr><td>{escape(environment)}</td><td><code>{escape(current.image)}</code>"
                f"</td><td><code>{escape(current.digest or '-')}</code></td>"
                f'<td><a href="{link}">#{current.deployment_id}</a></td></tr>'
            )
    rows = []
    for d in page.items:
        link = _signed(settings, "deployment", d.id)
        rows.append(
            f'<tr><td><a href="{link}">#{d.id}</a></td>'
            f'<td><span class="badge {escape(str(d.status))}">{escape(str(d.status))}</span></td>'
            f"<td>{escape(d.environment)}</td><td>{escape(d.ref or '-')}</td>"
            f"<td><code>{escape((d.commit_sha or '-')[:12])}</code></td>"
            f"<td>{_when(d.created_at)}</td><td>{_duration(d)}</td></tr>"
        )
    body = f"""
<h1>{escape(service.name)}</h1>
<dl><dt>repository</dt><dd>{escape(service.repository)} ({escape(service.provider)})</dd>
<dt>branch</dt><dd>{escape(service.branch)}</dd>
<dt>root dir</dt><dd>{escape(service.root_dir)}</dd></dl>
<h2>Current image</h2>
{_table(["environment", "image", "digest", "from"], images)}
<h2>Recent deployments</h2>
{_table(["id", "status", "environment", "ref", "commit", "created", "took"], rows)}
"""
    return _page(f"{service.name} · click-deploy", body)


def setup_pages(app: web.Application, runtime: Runtime) -> None:
    """Needs setup_api (tokens, settings and the live log endpoint) before it. A page key
    that cannot sign stops the start (ConfigError)."""
    signing.check(runtime.settings)
    app[RUNTIME] = runtime
    app.router.add_get(r"/deployments/{id:\d+}", deployment_page)
    app.router.add_get(r"/services/{id:\d+}", service_page)
