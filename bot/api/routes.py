"""The JSON endpoints: services, deployments, cancel, deploy."""

from __future__ import annotations

from typing import Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot.api import schemas as s
from bot.api.auth import TOKEN
from bot.api.errors import ApiError, describe, to_json
from bot.api.operations import operation, path_id
from bot.api.queries import DeploymentsQuery
from bot.api.tokens import ApiToken, Scope
from bot.runtime import Runtime
from pipeline.queue.queue import CancelOutcome
from pipeline.release import ReleaseStore, observe
from pipeline.rollback import enqueue_rollback
from pipeline.store import NewService
from pipeline.trigger import Trigger

RUNTIME = web.AppKey("api_runtime", Runtime)
M = TypeVar("M", bound=BaseModel)


async def body(request: web.Request, model: type[M], *, empty_ok: bool = False) -> M:
    """The JSON body as `model`; malformed JSON or wrong types are a 422 naming the field."""
    raw = await request.read()
    if not raw.strip() and empty_ok:
        raw = b"{}"
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise ApiError(422, describe(error, "body", model)) from None


def query(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as error:
        raise ApiError(422, describe(error, "query", model)) from None


def reply(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(to_json(model), status=status, headers=headers)


def runtime_of(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


# --- services ---------------------------------------------------------------------------


@operation(
    "POST", "/services", "Add a service", Scope.ADMIN,
    body=s.ServiceCreate, responses={201: s.ServiceOut}, errors=(409, 422),
)  # fmt: skip
async def create_service(request: web.Request) -> web.Response:
    new = await body(request, s.ServiceCreate)
    created = await runtime_of(request).store.create_service(
        NewService(
            new.name, new.repository, new.provider, new.branch, new.root_dir, new.config.stored()
        )
    )
    return reply(s.ServiceOut.of(created), 201, {"Location": f"/api/v1/services/{created.id}"})


def reveals_config(request: web.Request) -> bool:
    """Build variables' values are for admin tokens; others see their names."""
    token: ApiToken = request[TOKEN]
    return token.scope >= Scope.ADMIN


@operation("GET", "/services", "List services", Scope.READ, responses={200: s.ServiceList})
async def list_services(request: web.Request) -> web.Response:
    services = await runtime_of(request).store.list_services()
    reveal = reveals_config(request)
    return reply(s.ServiceList(items=[s.ServiceOut.of(one, reveal=reveal) for one in services]))


@operation(
    "GET", "/services/{id}", "Get a service", Scope.READ,
    responses={200: s.ServiceDetail}, errors=(404,),
)  # fmt: skip
async def get_service(request: web.Request) -> web.Response:
    store = runtime_of(request).store
    service = await store.get_service(path_id(request))
    out = s.ServiceOut.of(service, reveal=reveals_config(request))
    # What runs is looked at now: the record says only that it was healthy at the switch.
    releases = await observe(await ReleaseStore(store.pool).live_for_service(service.id))
    return reply(
        s.ServiceDetail(**out.model_dump(), releases=[s.ReleaseOut.of(r) for r in releases])
    )


@operation(
    "PATCH", "/services/{id}", "Change a service (only the fields given)", Scope.ADMIN,
    body=s.ServiceUpdate, responses={200: s.ServiceOut}, errors=(404, 422),
)  # fmt: skip
async def update_service(request: web.Request) -> web.Response:
    service_id = path_id(request)
    change = await body(request, s.ServiceUpdate, empty_ok=True)
    updated = await runtime_of(request).store.update_service(
        service_id,
        provider=change.provider,
        repository=change.repository,
        branch=change.branch,
        root_dir=change.root_dir,
        config=None if change.config is None else change.config.stored(),
    )
    return reply(s.ServiceOut.of(updated))


@operation(
    "DELETE", "/services/{id}", "Delete a service and its history", Scope.ADMIN,
    responses={204: None}, errors=(404, 409),
)  # fmt: skip
async def delete_service(request: web.Request) -> web.Response:
    await runtime_of(request).store.delete_service(path_id(request))
    return web.Response(status=204)


@operation(
    "GET", "/services/{id}/deployments", "A service's deployments, newest first", Scope.READ,
    query=DeploymentsQuery, responses={200: s.DeploymentList}, errors=(404, 422),
)  # fmt: skip
async def list_deployments(request: web.Request) -> web.Response:
    service_id = path_id(request)
    wanted = query(request, DeploymentsQuery)
    runtime = runtime_of(request)
    await runtime.store.get_service(service_id)
    page = await runtime.store.list_deployments(
        service_id, limit=wanted.limit, before=wanted.before, status=wanted.status
    )
    items = [s.DeploymentOut.of(one) for one in page.items]
    return reply(s.DeploymentList(items=items, next_cursor=page.next_cursor))


# --- deployments ------------------------------------------------------------------------


@operation(
    "POST", "/services/{id}/deploy", "Queue a deployment", Scope.DEPLOY,
    body=s.DeployRequest, responses={202: s.DeploymentOut}, errors=(404, 409, 422),
)  # fmt: skip
async def deploy(request: web.Request) -> web.Response:
    service_id = path_id(request)
    token: ApiToken = request[TOKEN]
    wanted = await body(request, s.DeployRequest, empty_ok=True)
    runtime = runtime_of(request)
    service = await runtime.store.get_service(service_id)
    trigger = Trigger(
        source="api",
        actor=token.name,
        environment=wanted.environment,
        ref=wanted.ref or service.branch,
        commit_sha=wanted.commit,
        reason="REST API",
    )
    deployment = await runtime.queue.enqueue(
        service.id,
        environment=wanted.environment,
        ref=trigger.ref,
        commit_sha=wanted.commit,
        trigger=trigger.to_json(),
    )
    deployment = await runtime.store.get_deployment(deployment.id)
    location = f"/api/v1/deployments/{deployment.id}"
    return reply(s.DeploymentOut.of(deployment), 202, {"Location": location})


@operation(
    "POST", "/services/{id}/rollback",
    "Queue a rollback: the previous (or given) image re-tagged, no rebuild", Scope.DEPLOY,
    body=s.RollbackRequest, responses={202: s.DeploymentOut}, errors=(404, 409, 422),
)  # fmt: skip
async def rollback(request: web.Request) -> web.Response:
    service_id = path_id(request)
    token: ApiToken = request[TOKEN]
    wanted = await body(request, s.RollbackRequest, empty_ok=True)
    runtime = runtime_of(request)
    service = await runtime.store.get_service(service_id)
    trigger = Trigger(source="api", actor=token.name, reason="REST API rollback")
    deployment = await enqueue_rollback(
        runtime.store, runtime.queue, service, wanted.environment, trigger=trigger, to=wanted.to
    )
    deployment = await runtime.store.get_deployment(deployment.id)
    location = f"/api/v1/deployments/{deployment.id}"
    return reply(s.DeploymentOut.of(deployment), 202, {"Location": location})


@operation(
    "GET", "/deployments/{id}", "Get a deployment with its steps", Scope.READ,
    responses={200: s.DeploymentDetail}, errors=(404,),
)  # fmt: skip
async def get_deployment(request: web.Request) -> web.Response:
    deployment_id = path_id(request)
    store = runtime_of(request).store
    deployment = await store.get_deployment(deployment_id)
    steps = [s.StepOut.of(step) for step in await store.list_steps(deployment_id)]
    out = s.DeploymentOut.of(deployment).model_dump()
    return reply(s.DeploymentDetail(**out, steps=steps))


@operation(
    "POST", "/deployments/{id}/cancel",
    "Cancel: at once if queued (200), within a second if running (202)", Scope.DEPLOY,
    responses={200: s.CancelOut, 202: s.CancelOut}, errors=(404, 409),
)  # fmt: skip
async def cancel_deployment(request: web.Request) -> web.Response:
    deployment_id = path_id(request)
    result = await runtime_of(request).queue.cancel(deployment_id)
    if result.outcome is CancelOutcome.ALREADY_FINISHED:
        raise ApiError(
            409, f"deployment {deployment_id} already {result.deployment.status}", "finished"
        )
    outcome: Literal["cancelled", "requested"] = (
        "cancelled" if result.outcome is CancelOutcome.CANCELLED else "requested"
    )
    out = s.CancelOut(outcome=outcome, deployment=s.DeploymentOut.of(result.deployment))
    return reply(out, 200 if outcome == "cancelled" else 202)
