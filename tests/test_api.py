"""The REST API: every endpoint, its scopes and its errors, against a real database."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.api.tokens import TokenStore
from pipeline.states import Status
from tests.support.api import Api

pytest_plugins = ["tests.support.api"]

V1 = "/api/v1"


async def json_of(response: Any, status: int) -> Any:
    body = await response.json()
    assert response.status == status, body
    return body


def assert_error(body: Any, code: str) -> None:
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def create_service(api: Api, name: str = "web") -> dict[str, Any]:
    response = await api.client.post(
        f"{V1}/services",
        json={"name": name, "repository": "acme/web", "provider": "github"},
        headers=api.auth("admin"),
    )
    return await json_of(response, 201)  # type: ignore[no-any-return]


async def test_services_create_list_get_update_delete(api: Api) -> None:
    created = await create_service(api)
    assert created["name"] == "web" and created["branch"] == "main"
    listed = await json_of(await api.client.get(f"{V1}/services", headers=api.auth("read")), 200)
    assert [s["name"] for s in listed["items"]] == ["web"]
    one = await json_of(
        await api.client.get(f"{V1}/services/{created['id']}", headers=api.auth("read")), 200
    )
    assert {key: value for key, value in one.items() if key != "releases"} == created
    assert one["releases"] == []  # target none: nothing runs
    updated = await json_of(
        await api.client.patch(
            f"{V1}/services/{created['id']}",
            json={"branch": "release", "config": {"build": {"dockerfile": "Dockerfile"}}},
            headers=api.auth("admin"),
        ),
        200,
    )
    assert updated["branch"] == "release" and updated["repository"] == "acme/web"
    assert updated["config"] == {"build": {"dockerfile": "Dockerfile"}}
    deleted = await api.client.delete(f"{V1}/services/{created['id']}", headers=api.auth("admin"))
    assert deleted.status == 204
    gone = await api.client.get(f"{V1}/services/{created['id']}", headers=api.auth("read"))
    assert_error(await json_of(gone, 404), "not_found")


async def test_duplicate_service_is_409_and_bad_fields_are_422(api: Api) -> None:
    await create_service(api)
    again = await api.client.post(
        f"{V1}/services",
        json={"name": "web", "repository": "x/y", "provider": "github"},
        headers=api.auth("admin"),
    )
    assert_error(await json_of(again, 409), "conflict")
    bad = await api.client.post(
        f"{V1}/services", json={"name": "Web!", "repository": 5}, headers=api.auth("admin")
    )
    body = await json_of(bad, 422)
    assert_error(body, "invalid")
    assert "body.name" in body["error"]["message"]
    assert "body.repository" in body["error"]["message"]


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[]", b'"x"', b'{"name": null}', b"\xff\xfe", b'{"name": "a\\u0000"}'],
)
async def test_malformed_bodies_are_422(api: Api, raw: bytes) -> None:
    response = await api.client.post(
        f"{V1}/services",
        data=raw,
        headers={**api.auth("admin"), "Content-Type": "application/json"},
    )
    assert_error(await json_of(response, 422), "invalid")


async def test_config_the_database_refuses_is_422_not_500(api: Api) -> None:
    response = await api.client.post(
        f"{V1}/services",
        json={"name": "web", "repository": "acme/web", "config": {"k": "a\u0000b"}},
        headers=api.auth("admin"),
    )
    assert_error(await json_of(response, 422), "invalid")


async def test_deploy_get_list_and_cancel(api: Api) -> None:
    service = await create_service(api)
    sid = service["id"]
    queued = await json_of(
        await api.client.post(
            f"{V1}/services/{sid}/deploy",
            json={"ref": "main", "commit": "abc1234" * 5 + "abcde", "environment": "staging"},
            headers=api.auth("deploy"),
        ),
        202,
    )
    assert queued["status"] == "queued" and queued["environment"] == "staging"
    assert queued["commit"] == "abc1234" * 5 + "abcde" and queued["source"] == "api"
    assert queued["actor"] == "deploy-token"
    default = await json_of(
        await api.client.post(f"{V1}/services/{sid}/deploy", headers=api.auth("deploy")), 202
    )
    assert default["ref"] == "main" and default["environment"] == "production"

    got = await json_of(
        await api.client.get(f"{V1}/deployments/{queued['id']}", headers=api.auth("read")), 200
    )
    assert got["id"] == queued["id"] and got["steps"] == []

    page = await json_of(
        await api.client.get(f"{V1}/services/{sid}/deployments?limit=1", headers=api.auth("read")),
        200,
    )
    assert [d["id"] for d in page["items"]] == [default["id"]]
    older = await json_of(
        await api.client.get(
            f"{V1}/services/{sid}/deployments?limit=1&before={page['next_cursor']}",
            headers=api.auth("read"),
        ),
        200,
    )
    assert [d["id"] for d in older["items"]] == [queued["id"]] and older["next_cursor"] is None
    filtered = await json_of(
        await api.client.get(
            f"{V1}/services/{sid}/deployments?status=succeeded", headers=api.auth("read")
        ),
        200,
    )
    assert filtered["items"] == []

    cancelled = await json_of(
        await api.client.post(
            f"{V1}/deployments/{queued['id']}/cancel", headers=api.auth("deploy")
        ),
        200,
    )
    assert cancelled["outcome"] == "cancelled"
    assert cancelled["deployment"]["status"] == "cancelled"
    again = await api.client.post(
        f"{V1}/deployments/{queued['id']}/cancel", headers=api.auth("deploy")
    )
    assert_error(await json_of(again, 409), "finished")


async def test_cancel_of_a_running_deployment_is_202(api: Api) -> None:
    service = await create_service(api)
    store = api.runtime.store
    deployment = await api.runtime.queue.enqueue(service["id"])
    await api.runtime.queue.claim("w1")
    response = await api.client.post(
        f"{V1}/deployments/{deployment.id}/cancel", headers=api.auth("admin")
    )
    body = await json_of(response, 202)
    assert body["outcome"] == "requested" and body["deployment"]["cancel_requested"] is True
    assert (await store.get_deployment(deployment.id)).status == Status.CLONING


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "query.limit"),
        ("limit=x", "query.limit"),
        ("status=bogus", "query.status"),
        ("before=-1", "query.before"),
    ],
)
async def test_bad_query_parameters_are_422_naming_them(api: Api, query: str, field: str) -> None:
    service = await create_service(api)
    response = await api.client.get(
        f"{V1}/services/{service['id']}/deployments?{query}", headers=api.auth("read")
    )
    body = await json_of(response, 422)
    assert field in body["error"]["message"]


async def test_deploy_bad_input(api: Api) -> None:
    service = await create_service(api)
    url = f"{V1}/services/{service['id']}/deploy"
    for payload, field in [
        ({"commit": "not-a-sha"}, "body.commit"),
        ({"environment": ""}, "body.environment"),
        ({"ref": 3}, "body.ref"),
        ({"ref": "--upload-pack=touch /tmp/x"}, "body.ref"),
        ({"extra": 1}, "body.extra"),
    ]:
        body = await json_of(await api.client.post(url, json=payload, headers=api.auth()), 422)
        assert field in body["error"]["message"], body
    missing = await api.client.post(f"{V1}/services/999/deploy", headers=api.auth())
    assert_error(await json_of(missing, 404), "not_found")


async def test_ids_out_of_range_and_unknown_paths_are_404(api: Api) -> None:
    for path in [
        "/deployments/99999999999999999999",
        "/deployments/0",
        "/deployments/abc",
        "/deployments/5",
        "/nothing",
    ]:
        response = await api.client.get(V1 + path, headers=api.auth("read"))
        assert_error(await json_of(response, 404), "not_found")
    wrong_method = await api.client.put(f"{V1}/services", headers=api.auth("read"))
    assert_error(await json_of(wrong_method, 405), "method_not_allowed")


async def test_tokens_scopes_and_revocation(api: Api) -> None:
    service = await create_service(api)
    anonymous = await api.client.get(f"{V1}/services")
    assert_error(await json_of(anonymous, 401), "unauthorized")
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = await api.client.get(f"{V1}/services", headers={"Authorization": "Bearer cdt_nope"})
    assert_error(await json_of(wrong, 401), "unauthorized")
    basic = await api.client.get(f"{V1}/services", headers={"Authorization": "Basic eDp5"})
    assert_error(await json_of(basic, 401), "unauthorized")
    read_deploys = await api.client.post(
        f"{V1}/services/{service['id']}/deploy", headers=api.auth("read")
    )
    assert_error(await json_of(read_deploys, 403), "forbidden")
    deploy_admins = await api.client.delete(
        f"{V1}/services/{service['id']}", headers=api.auth("deploy")
    )
    assert_error(await json_of(deploy_admins, 403), "forbidden")

    await TokenStore(api.runtime.pool).revoke("read-token")
    revoked = await api.client.get(f"{V1}/services", headers=api.auth("read"))
    assert_error(await json_of(revoked, 401), "unauthorized")


async def test_tokens_are_stored_hashed_and_last_use_is_kept(api: Api) -> None:
    await api.client.get(f"{V1}/services", headers=api.auth("read"))
    rows = await api.runtime.pool.fetch("SELECT * FROM api_tokens")
    clear = set(api.tokens.values())
    assert rows and clear  # the loop below checks something
    for row in rows:
        assert not {str(value) for value in dict(row).values()} & clear
        assert bytes(row["token_hash"]) not in {t.encode() for t in clear}
    used = {row["name"]: row["last_used_at"] for row in rows}
    assert used["read-token"] is not None and used["admin-token"] is None


async def test_deleting_a_service_with_work_in_flight_is_409(api: Api) -> None:
    service = await create_service(api)
    await api.runtime.queue.enqueue(service["id"])
    response = await api.client.delete(f"{V1}/services/{service['id']}", headers=api.auth())
    assert_error(await json_of(response, 409), "conflict")


async def test_log_pages_by_cursor(api: Api) -> None:
    service = await create_service(api)
    deployment = await api.runtime.queue.enqueue(service["id"])
    from pipeline.store import LogEntry

    await api.runtime.store.append_logs(
        deployment.id, 1, [LogEntry(f"line {n}") for n in range(1, 6)]
    )
    url = f"{V1}/deployments/{deployment.id}/logs"
    first = await json_of(await api.client.get(f"{url}?limit=2", headers=api.auth("read")), 200)
    assert [line["seq"] for line in first["items"]] == [1, 2] and first["next_cursor"] == 2
    rest = await json_of(
        await api.client.get(f"{url}?after=2&limit=100", headers=api.auth("read")), 200
    )
    assert [line["line"] for line in rest["items"]] == ["line 3", "line 4", "line 5"]
    empty = await json_of(await api.client.get(f"{url}?after=5", headers=api.auth("read")), 200)
    assert empty == {"items": [], "next_cursor": 5}
    bad = await api.client.get(f"{url}?after=-3", headers=api.auth("read"))
    assert "query.after" in (await json_of(bad, 422))["error"]["message"]
    missing = await api.client.get(f"{V1}/deployments/999/logs", headers=api.auth("read"))
    assert_error(await json_of(missing, 404), "not_found")


async def test_openapi_document_describes_every_operation(api: Api) -> None:
    document = await json_of(await api.client.get(f"{V1}/openapi.json"), 200)
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    assert "post" in paths["/api/v1/services/{id}/deploy"]
    deploy = paths["/api/v1/services/{id}/deploy"]["post"]
    schema_ref = deploy["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = schema_ref.rsplit("/", 1)[1]
    assert set(document["components"]["schemas"][name]["properties"]) == {
        "ref",
        "commit",
        "environment",
    }
    for path in [
        "/api/v1/services",
        "/api/v1/services/{id}",
        "/api/v1/services/{id}/deployments",
        "/api/v1/deployments/{id}",
        "/api/v1/deployments/{id}/logs",
        "/api/v1/deployments/{id}/cancel",
    ]:
        assert path in paths
    await asyncio.sleep(0)


async def test_rollback_is_queued_or_409_with_the_reason(api: Api) -> None:
    service = await create_service(api, "back")
    sid = service["id"]
    url = f"{V1}/services/{sid}/rollback"
    nothing = await json_of(await api.client.post(url, headers=api.auth("deploy")), 409)
    assert_error(nothing, "conflict")
    assert "never been deployed" in nothing["error"]["message"]
    assert_error(
        await json_of(await api.client.post(url, headers=api.auth("read")), 403), "forbidden"
    )
    assert_error(
        await json_of(
            await api.client.post(url, json={"to": "x"}, headers=api.auth("deploy")), 422
        ),
        "invalid",
    )

    pool = api.runtime.pool
    ids = []
    for digest in ("1" * 64, "2" * 64):
        deployment_id = await pool.fetchval(
            "INSERT INTO deployments (service_id, status, image, digest, commit_sha)"
            " VALUES ($1, 'succeeded', $2, $3, $4) RETURNING id",
            sid, f"r/back:{digest[:6]}", f"sha256:{digest}", digest[:40],
        )  # fmt: skip
        await pool.execute(
            "INSERT INTO service_images (service_id, environment, deployment_id, image, digest)"
            " VALUES ($1, 'production', $2, $3, $4) ON CONFLICT (service_id, environment)"
            " DO UPDATE SET deployment_id = excluded.deployment_id, digest = excluded.digest",
            sid, deployment_id, f"r/back:{digest[:6]}", f"sha256:{digest}",
        )  # fmt: skip
        ids.append(deployment_id)
    queued = await json_of(await api.client.post(url, headers=api.auth("deploy")), 202)
    assert queued["status"] == "queued" and queued["commit"] == "1" * 40
    stored = await api.runtime.store.get_deployment(queued["id"])
    assert stored.trigger["rollback_to"] == ids[0]


# --- values and config are checked before they are stored (pipeline/values.py) ------------


@pytest.mark.parametrize(
    ("payload", "phrase"),
    [
        # The examples.
        ({"config": {"slack": {"users": "U0ALLOWED"}}}, "body.config.slack.users: Input should"),
        ({"root_dir": "../../etc"}, "body.root_dir: root dir '../../etc' is not allowed"),
        ({"branch": "-x"}, "body.branch: branch '-x' is not a git branch or tag name"),
        ({"config": {"slak": {}}}, "body.config.slak: is not a known key (did you mean slack?)"),
        ({"config": {"protected": "yes"}}, "body.config.protected: Input should be a valid"),
        ({"config": {"watch": ["/etc"]}}, "body.config.watch.0: watch path '/etc'"),
        ({"config": {"build": {"strat": "x"}}}, "did you mean start?"),
        ({"provider": "git", "repository": "ext::sh -c x"}, "body.repository: repository"),
        ({"provider": "git", "repository": "-u x"}, "starts with '-'"),
        ({"repository": "https://x.example/y.git"}, "not a GitHub repository"),
        ({"name": "Web_App"}, "body.name: service name 'Web_App' is not allowed"),
        ({"nmae": "x"}, "body.nmae: is not a known key (did you mean name?)"),
    ],
)
async def test_bad_service_values_are_422_naming_the_field_and_nothing_is_stored(
    api: Api, payload: dict[str, Any], phrase: str
) -> None:
    body = {"name": "web", "repository": "acme/web", "provider": "github", **payload}
    response = await api.client.post(f"{V1}/services", json=body, headers=api.auth("admin"))
    answer = await json_of(response, 422)
    assert_error(answer, "invalid")
    assert phrase in answer["error"]["message"], answer
    listed = await json_of(await api.client.get(f"{V1}/services", headers=api.auth()), 200)
    assert listed["items"] == []


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"config": {"slack": {"users": "U0ALLOWED"}}}, "body.config.slack.users"),
        ({"config": {"allow": "jsmith"}}, "body.config.allow: Input should be a valid array"),
        ({"root_dir": "/etc"}, "body.root_dir: root dir '/etc' is not allowed"),
        ({"branch": "a..b"}, "body.branch"),
        # Checked against the stored provider (github): not a path GitHub could have.
        ({"repository": "ext::sh -c x"}, "repository 'ext::sh -c x' is not a GitHub repository"),
        ({"provider": "git"}, "repository 'acme/web' is not allowed: local paths"),
    ],
)
async def test_a_bad_patch_is_422_and_changes_nothing(
    api: Api, change: dict[str, Any], phrase: str
) -> None:
    created = await create_service(api)
    url = f"{V1}/services/{created['id']}"
    answer = await json_of(await api.client.patch(url, json=change, headers=api.auth("admin")), 422)
    assert_error(answer, "invalid")
    assert phrase in answer["error"]["message"], answer
    after = await json_of(await api.client.get(url, headers=api.auth()), 200)
    assert after.pop("releases") == [] and after == created


async def test_good_values_are_stored_in_their_one_form(api: Api) -> None:
    response = await api.client.post(
        f"{V1}/services",
        json={
            "name": "web",
            "repository": "acme/web",
            "provider": "github",
            "root_dir": "./web/",
            "config": {"watch": ["shared/"], "slack": {"users": ["U0ALLOWED"]}},
        },
        headers=api.auth("admin"),
    )
    created = await json_of(response, 201)
    assert created["root_dir"] == "web"
    assert created["config"] == {"watch": ["shared"], "slack": {"users": ["U0ALLOWED"]}}
    # An upper-case commit id is the same commit: stored as git writes it.
    deploy = await api.client.post(
        f"{V1}/services/{created['id']}/deploy",
        json={"commit": "ABCDEF0123" * 4},
        headers=api.auth("deploy"),
    )
    assert (await json_of(deploy, 202))["commit"] == "abcdef0123" * 4


async def test_deploy_values_are_checked_as_everywhere(api: Api) -> None:
    service = await create_service(api)
    url = f"{V1}/services/{service['id']}/deploy"
    for payload, phrase in [
        ({"environment": "prod uction/../x"}, "body.environment: environment 'prod uction/../x'"),
        ({"ref": "-x"}, "body.ref: ref '-x' is not a git branch or tag name"),
        ({"commit": "abc1234"}, "body.commit: commit 'abc1234' is not a commit id: use the full"),
    ]:
        answer = await json_of(await api.client.post(url, json=payload, headers=api.auth()), 422)
        assert phrase in answer["error"]["message"], answer
    rollback = await api.client.post(
        f"{V1}/services/{service['id']}/rollback",
        json={"environment": "../x"},
        headers=api.auth(),
    )
    assert "body.environment" in (await json_of(rollback, 422))["error"]["message"]


async def test_below_admin_build_variables_show_names_not_values(api: Api) -> None:
    config = {
        "build": {
            "dockerfile": "Dockerfile",
            "env": {"NPM_TOKEN": "npm_s3cret"},
            "build_args": {"PIP_INDEX_URL": "https://user:p4ss@pypi.example.com/simple"},
        },
        "protected": True,
    }
    created = await json_of(
        await api.client.post(
            f"{V1}/services",
            json={
                "name": "web",
                "repository": "acme/web",
                "provider": "github",
                "config": config,
            },
            headers=api.auth("admin"),
        ),
        201,
    )
    assert created["config"] == config and created["redacted"] is False
    names_only = {
        "build": {
            "dockerfile": "Dockerfile",
            "env": {"NPM_TOKEN": "<redacted>"},
            "build_args": {"PIP_INDEX_URL": "<redacted>"},
        },
        "protected": True,
    }
    for scope in ("read", "deploy"):
        one = await api.client.get(f"{V1}/services/{created['id']}", headers=api.auth(scope))
        text = await one.text()
        assert "npm_s3cret" not in text and "p4ss" not in text, scope
        shown = await json_of(one, 200)
        assert shown.pop("releases") == []  # only GET /services/{id} lists them
        assert shown["config"] == names_only and shown["redacted"] is True, scope
        listed = await json_of(await api.client.get(f"{V1}/services", headers=api.auth(scope)), 200)
        assert listed["items"] == [shown], scope
    admin = await json_of(
        await api.client.get(f"{V1}/services/{created['id']}", headers=api.auth("admin")), 200
    )
    assert admin["config"] == config and admin["redacted"] is False
    document = await json_of(await api.client.get(f"{V1}/openapi.json"), 200)
    described = document["components"]["schemas"]["ServiceOut"]["properties"]
    assert "redacted" in described and "<redacted>" in described["config"]["description"]
