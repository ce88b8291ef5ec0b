"""The Node/Bun planner, family by family: package-manager state, lockfiles and tool
versions, start commands, runtimes scripts need, framework production starts, the order
of steps, images without dev dependencies, and the evidence behind each choice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.plan import BaseImages, BuildConfig, BuildPlan, PlanResult, plan_app
from pipeline.plan.providers.node.semver import major_satisfies

MIRROR = "localhost:5000"


def plan(tmp_path: Path, files: dict[str, Any], config: BuildConfig | None = None) -> PlanResult:
    for relative, content in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return plan_app(tmp_path, config or BuildConfig(), BaseImages(mirror=MIRROR))


def ok(result: PlanResult) -> BuildPlan:
    assert result.ok, result.message
    assert result.plan is not None
    return result.plan


def lines(plan: BuildPlan) -> list[str]:
    return plan.dockerfile.splitlines()


def final_stage(plan: BuildPlan) -> str:
    return plan.dockerfile.rsplit("\nFROM ", 1)[-1]


def evidence(plan: BuildPlan) -> str:
    return "\n".join(plan.evidence)


def messages(plan: BuildPlan) -> str:
    return "\n".join(text for _, text in plan.messages)


BERRY_LOCK = '__metadata:\n  version: {v}\n  cacheKey: 8\n\n"a@npm:1":\n  version: 1.0.0\n'
SERVER = {"package.json": {"scripts": {"start": "node s.js"}}, "s.js": ""}


# --- 1. package-manager state --------------------------------------------------------------


def test_pnp_archives_go_to_the_project_cache_in_the_image(tmp_path: Path) -> None:
    files = {
        **SERVER,
        "yarn.lock": BERRY_LOCK.format(v=8),
        ".yarnrc.yml": "enableGlobalCache: true\n",
    }
    built = ok(plan(tmp_path, files))
    install = next(line for line in lines(built) if "yarn install" in line)
    assert "YARN_ENABLE_GLOBAL_CACHE=false yarn install --immutable" in install
    assert "--mount=type=cache" not in install  # PnP runs from the archives
    assert "Plug'n'Play" in evidence(built)


def test_node_modules_linker_keeps_its_cache_in_a_mount(tmp_path: Path) -> None:
    files = {
        **SERVER,
        "yarn.lock": BERRY_LOCK.format(v=8),
        ".yarnrc.yml": "nodeLinker: node-modules\n",
    }
    install = next(line for line in lines(ok(plan(tmp_path, files))) if "yarn install" in line)
    assert "--mount=type=cache,target=/root/.yarn/berry/cache" in install
    assert "ENABLE_GLOBAL_CACHE" not in install


@pytest.mark.parametrize(
    "lockfile",
    [
        {"yarn.lock": "# yarn lockfile v1\n"},
        {"yarn.lock": BERRY_LOCK.format(v=8)},
        {"pnpm-lock.yaml": "lockfileVersion: '9.0'\n"},
        {"package-lock.json": "{}"},
        {"bun.lock": "{}"},
    ],
)
def test_no_setting_in_the_image_points_into_root(tmp_path: Path, lockfile: dict[str, str]) -> None:
    files = {
        "package.json": {
            "scripts": {"start": "node s.js"},
            "dependencies": {"a": "1"},
            "devDependencies": {"b": "1"},
        },
        "s.js": "",
        **lockfile,
    }
    built = ok(plan(tmp_path, files))
    env_lines = [
        line for line in final_stage(built).splitlines() if line.startswith(("ENV", "    "))
    ]
    assert env_lines and not any("/root" in line for line in env_lines), built.dockerfile
    assert "YARN_CACHE_FOLDER" not in "\n".join(env_lines)


# --- 2. lockfiles and versions ------------------------------------------------------------


def test_npm_ci_falls_back_to_npm_install_with_a_warning(tmp_path: Path) -> None:
    built = ok(plan(tmp_path, {**SERVER, "package-lock.json": "{}"}))
    install = built.install or ""
    assert install.startswith("npm ci || {")
    assert ">&2; npm install; }" in install and "package-lock.json does not match" in install


@pytest.mark.parametrize(
    ("metadata", "yarn"), [("4", "2.4.3"), ("5", "3.1.1"), ("6", "3.8.7"), ("8", "4")]
)
def test_berry_lockfile_format_picks_the_yarn_that_wrote_it(
    tmp_path: Path, metadata: str, yarn: str
) -> None:
    files = {**SERVER, "yarn.lock": BERRY_LOCK.format(v=metadata), ".yarnrc.yml": ""}
    built = ok(plan(tmp_path, files))
    assert f"npm install -g --force @yarnpkg/cli-dist@{yarn}" in built.dockerfile
    assert f"yarn.lock __metadata version {metadata}" in evidence(built)


def test_package_manager_field_wins_over_the_lockfile_format(tmp_path: Path) -> None:
    files = {
        "package.json": {"packageManager": "yarn@3.6.4", "scripts": {"start": "node s.js"}},
        "s.js": "",
        "yarn.lock": BERRY_LOCK.format(v=8),
    }
    assert "@yarnpkg/cli-dist@3.6.4" in ok(plan(tmp_path, files)).dockerfile


def test_yarn_path_release_is_copied_with_the_manifests(tmp_path: Path) -> None:
    files = {
        **SERVER,
        "yarn.lock": BERRY_LOCK.format(v=6),
        ".yarnrc.yml": "yarnPath: .yarn/releases/yarn-3.6.4.cjs\n",
        ".yarn/releases/yarn-3.6.4.cjs": "//",
    }
    built = ok(plan(tmp_path, files))
    copies = lines(built).index("COPY .yarn/releases/ .yarn/releases/")
    assert copies < next(i for i, line in enumerate(lines(built)) if "yarn install" in line)
    assert "yarnPath .yarn/releases/yarn-3.6.4.cjs" in evidence(built)


def test_missing_yarn_path_release_names_the_file(tmp_path: Path) -> None:
    files = {
        **SERVER,
        "yarn.lock": BERRY_LOCK.format(v=6),
        ".yarnrc.yml": "yarnPath: .yarn/releases/y.cjs\n",
    }
    result = plan(tmp_path, files)
    assert not result.ok
    assert ".yarnrc.yml: yarnPath .yarn/releases/y.cjs does not exist" in (result.message or "")


@pytest.mark.parametrize(
    ("engines", "lockfile", "pnpm"),
    [("^8", "9.0", "8"), (">=8", "9.0", "9"), (None, "6.0", "8"), (">=9 <10", None, "9")],
)
def test_engines_pnpm_is_honoured(
    tmp_path: Path, engines: str | None, lockfile: str | None, pnpm: str
) -> None:
    package: dict[str, Any] = {"scripts": {"start": "node s.js"}}
    files: dict[str, Any] = {"s.js": ""}
    if engines:
        package["engines"] = {"pnpm": engines}
    if lockfile:
        files["pnpm-lock.yaml"] = f"lockfileVersion: '{lockfile}'\n"
    else:
        package["packageManager"] = "pnpm"
    built = ok(plan(tmp_path, {"package.json": package, **files}))
    assert f"npm install -g --force pnpm@{pnpm}" in built.dockerfile


def test_tool_versions_pins_pnpm(tmp_path: Path) -> None:
    files = {
        **SERVER,
        "pnpm-lock.yaml": "lockfileVersion: '9.0'\n",
        ".tool-versions": "pnpm 9.1.0\n",
    }
    built = ok(plan(tmp_path, files))
    assert "pnpm@9.1.0" in built.dockerfile and ".tool-versions" in evidence(built)


def test_npm_version_from_package_manager_and_engines(tmp_path: Path) -> None:
    pinned = {
        "package.json": {"packageManager": "npm@10.9.2", "scripts": {"start": "node s.js"}},
        "s.js": "",
        "package-lock.json": "{}",
    }
    assert "npm install -g --force npm@10.9.2" in ok(plan(tmp_path / "a", pinned)).dockerfile
    old = {
        "package.json": {"engines": {"npm": "^8"}, "scripts": {"start": "node s.js"}},
        "s.js": "",
    }
    assert "npm install -g --force npm@8" in ok(plan(tmp_path / "b", old)).dockerfile
    fine = {
        "package.json": {"engines": {"npm": ">=9"}, "scripts": {"start": "node s.js"}},
        "s.js": "",
    }
    built = ok(plan(tmp_path / "c", fine))
    assert "npm install -g" not in built.dockerfile
    assert "engines.npm >=9: node 22's npm" in evidence(built)


@pytest.mark.parametrize(
    ("spec", "major", "allowed"),
    [
        ("^8", 8, True),
        ("^8", 9, False),
        (">=8", 10, True),
        (">=7 <9", 9, False),
        ("8.x", 8, True),
        ("7 || 9", 9, True),
        ("latest", 3, True),
        ("<9.1", 9, True),
        ("1.2.3 - 2", 3, False),
        ("~3.1", 3, True),
    ],
)
def test_major_satisfies(spec: str, major: int, allowed: bool) -> None:
    assert major_satisfies(spec, major) is allowed


# --- 3. start commands --------------------------------------------------------------------


def test_bun_module_entry_runs_on_the_bun_image(tmp_path: Path) -> None:
    files = {
        "package.json": {"name": "b", "module": "index.ts", "devDependencies": {"@types/bun": "1"}},
        "bun.lock": "{}",
        "index.ts": "Bun.serve({port: Number(process.env.PORT), fetch: () => new Response('hi')})",
    }
    built = ok(plan(tmp_path, files))
    assert built.start == "bun index.ts"
    assert built.runtime == "bun"
    assert lines(built)[2] == f"FROM {MIRROR}/oven/bun:1-slim AS build"  # dev deps pruned
    assert f"FROM {MIRROR}/oven/bun:1-slim AS runtime" in lines(built)
    assert "package.json: module index.ts → bun index.ts" in evidence(built)


def test_bun_image_names() -> None:
    assert BaseImages().image("bun", "1") == "oven/bun:1-slim"
    assert (
        BaseImages(mirror="reg.example/hub").image("bun", "1") == "reg.example/hub/oven/bun:1-slim"
    )


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("package.json5", "{\n  // comments are allowed\n  scripts: {start: 'node s.js'},\n}\n"),
        ("package.yaml", "scripts:\n  start: node s.js\n"),
    ],
)
def test_pnpm_manifests(tmp_path: Path, name: str, text: str) -> None:
    built = ok(plan(tmp_path, {name: text, "s.js": ""}))
    assert built.start == "pnpm run start"
    assert f"COPY {name} ./" in built.dockerfile
    assert f"{name}: only pnpm reads this manifest" in evidence(built)


def test_broken_json5_names_the_file(tmp_path: Path) -> None:
    result = plan(tmp_path, {"package.json5": "{scripts: "})
    assert not result.ok and (result.message or "").startswith("package.json5: does not parse")


def test_nuxt_starts_its_self_contained_output(tmp_path: Path) -> None:
    files = {
        "package.json": {
            "scripts": {
                "build": "nuxt build",
                "dev": "nuxt dev",
                "preview": "nuxt preview",
                "postinstall": "nuxt prepare",
            },
            "dependencies": {"nuxt": "^3", "vue": "^3"},
        },
        "package-lock.json": "{}",
        "nuxt.config.ts": "",
    }
    built = ok(plan(tmp_path, files))
    assert built.start == "node .output/server/index.mjs"
    final = final_stage(built)
    assert "COPY --from=build /app/.output /app/.output" in final
    assert "HOST=0.0.0.0" in final and "node_modules" not in final


@pytest.mark.parametrize(
    ("adapter", "expected"),
    [("node", "node build"), ("auto", "node build"), ("static", "caddy run")],
)
def test_sveltekit_adapters(tmp_path: Path, adapter: str, expected: str) -> None:
    files = {
        "package.json": {
            "scripts": {"build": "vite build", "preview": "vite preview"},
            "devDependencies": {
                "@sveltejs/kit": "2",
                f"@sveltejs/adapter-{adapter}": "1",
                "vite": "5",
            },
        },
        "svelte.config.js": (
            f"import adapter from '@sveltejs/adapter-{adapter}';\n"
            "export default {kit: {adapter: adapter()}};\n"
        ),
    }
    built = ok(plan(tmp_path, files))
    assert (built.start or "").startswith(expected)
    if adapter == "auto":
        assert "ENV NODE_ENV=production \\\n    GCP_BUILDPACKS=true" in built.dockerfile
        assert "adapter-auto" in messages(built)
    if adapter == "node":
        assert "HOST=0.0.0.0" in final_stage(built)


def test_sveltekit_platform_adapter_says_what_to_use(tmp_path: Path) -> None:
    files = {
        "package.json": {
            "scripts": {"build": "vite build"},
            "devDependencies": {"@sveltejs/kit": "2"},
        },
        "svelte.config.js": "import adapter from '@sveltejs/adapter-vercel';\n",
    }
    result = plan(tmp_path, files)
    assert not result.ok
    assert "svelte.config.js uses @sveltejs/adapter-vercel" in (result.message or "")
    assert "adapter-node" in (result.message or "")


def nx_project(name: str, executor: str, output: str) -> str:
    return json.dumps(
        {
            "name": name,
            "projectType": "application",
            "targets": {"build": {"executor": executor, "options": {"outputPath": output}}},
        }
    )


def test_nx_workspace_with_one_app(tmp_path: Path) -> None:
    files = {
        "package.json": {"devDependencies": {"nx": "19"}},
        "nx.json": "{}",
        "package-lock.json": "{}",
        "apps/api/project.json": nx_project("api", "@nx/webpack:webpack", "dist/apps/api"),
    }
    built = ok(plan(tmp_path, files))
    assert built.build == "node_modules/.bin/nx build api"
    assert built.start == "node dist/apps/api/main.js"


def test_nx_workspace_with_several_apps_says_which_setting_decides(tmp_path: Path) -> None:
    files = {
        "package.json": {"devDependencies": {"nx": "19"}},
        "nx.json": "{}",
        "apps/api/project.json": nx_project("api", "@nx/webpack:webpack", "dist/apps/api"),
        "apps/web/project.json": nx_project("web", "@nx/vite:build", "dist/apps/web"),
    }
    result = plan(tmp_path / "x", files)
    assert not result.ok
    assert "2 applications (api, web): set NX_APP=<name>" in (result.message or "")
    chosen = ok(plan(tmp_path / "x", {}, BuildConfig(env={"NX_APP": "web"})))
    assert "COPY --from=build /app/dist/apps/web /srv" in chosen.dockerfile
    assert "NX_APP (service env): Nx app web" in evidence(chosen)


def test_typescript_entry_without_a_runner_says_what_to_do(tmp_path: Path) -> None:
    result = plan(tmp_path, {"package.json": {"main": "src/index.ts"}, "src/index.ts": ""})
    assert not result.ok and "is TypeScript" in (result.message or "")
    assert "tsx" in (result.message or "")


# --- 4. runtimes scripts need -------------------------------------------------------------


def test_scripts_calling_bun_get_bun_installed(tmp_path: Path) -> None:
    files = {
        "package.json": {
            "scripts": {"build": "bun run gen.ts && tsc", "start": "node s.js"},
            "dependencies": {"a": "1"},
            "devDependencies": {"typescript": "5"},
        },
        "package-lock.json": "{}",
        "s.js": "",
    }
    built = ok(plan(tmp_path, files))
    setup = lines(built).index(
        "RUN --mount=type=cache,target=/root/.npm npm install -g --force bun@1"
    )
    assert setup < lines(built).index("COPY package.json package-lock.json ./")
    assert "script(s) build call bun" in evidence(built)


# --- 5. framework production starts -------------------------------------------------------


def next_app(config: str, scripts: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "package.json": {
            "scripts": scripts or {"build": "next build", "start": "next start"},
            "dependencies": {"next": "15", "react": "19"},
            "devDependencies": {"typescript": "5"},
        },
        "package-lock.json": "{}",
        "next.config.mjs": config,
        "public/x.svg": "",
    }


def test_next_export_is_served_as_static_files(tmp_path: Path) -> None:
    built = ok(plan(tmp_path, next_app("export default { output: 'export' }")))
    assert (
        "COPY --from=build /app/out /srv" in built.dockerfile
        and "next start" not in built.dockerfile
    )


def test_next_standalone_copies_the_traced_server(tmp_path: Path) -> None:
    built = ok(plan(tmp_path, next_app("export default { output: 'standalone' }")))
    final = final_stage(built)
    assert built.start == "node server.js"
    for copy in (
        "/app/.next/standalone /app",
        "/app/.next/static /app/.next/static",
        "/app/public /app/public",
    ):
        assert f"COPY --from=build {copy}" in final
    assert "HOSTNAME=0.0.0.0" in final and "COPY --from=build /app /app" not in final


def test_next_without_an_output_setting_is_built_standalone(tmp_path: Path) -> None:
    built = ok(plan(tmp_path / "a", next_app("export default { reactStrictMode: true }")))
    final = final_stage(built)
    assert built.start == "node server.js"
    assert "COPY --from=build /app/.next/standalone /app" in final
    assert "NEXT_PRIVATE_STANDALONE" not in final  # a build setting, not the image's
    build_stage = built.dockerfile.split(final)[0]
    assert "NEXT_PRIVATE_STANDALONE=1" in build_stage
    assert "standalone output is made (NEXT_PRIVATE_STANDALONE=1" in messages(built)
    # No config file at all: the default too.
    files = next_app("")
    del files["next.config.mjs"]
    assert ok(plan(tmp_path / "b", files)).start == "node server.js"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"start": "node server.mjs"}, "a custom server"),
        ({"build": "next build && node scripts/after.js"}, "a build of its own"),
        ({"lockfile": None}, "in a workspace: the lockfile is elsewhere"),
        ({"next": "12.1.0"}, "before Next 12.2"),
    ],
)
def test_next_is_left_to_next_start_where_standalone_might_not_fit(
    tmp_path: Path, change: dict[str, str | None], why: str
) -> None:
    files = next_app("export default {}")
    package = files["package.json"]
    if "start" in change or "build" in change:
        package["scripts"] = {**package["scripts"], **change}
    if "next" in change:
        package["dependencies"] = {**package["dependencies"], "next": change["next"]}
    if "lockfile" in change:
        del files["package-lock.json"]
        files["../package-lock.json"] = "{}"
    built = plan(tmp_path / "app", files)
    assert built.plan is None or built.plan.start != "node server.js", why


def test_next_start_with_a_fixed_port_listens_on_port(tmp_path: Path) -> None:
    scripts = {"build": "next build", "start": "next start -p 3000"}
    built = ok(plan(tmp_path, next_app("export default {}", scripts)))
    assert built.start == "node_modules/.bin/next start -p $PORT"
    assert "RUN --mount=type=cache,target=/app/.next/cache npm run build" in built.dockerfile
    assert "npm prune --omit=dev" in built.dockerfile  # next is a dependency


def test_astro_node_standalone_and_other_adapters(tmp_path: Path) -> None:
    package = {
        "scripts": {"build": "astro build", "preview": "astro preview"},
        "dependencies": {"astro": "5", "@astrojs/node": "9"},
    }
    config = (
        "import node from '@astrojs/node';\n"
        "export default { output: 'server', adapter: node({ mode: 'standalone' }) }"
    )
    built = ok(plan(tmp_path / "a", {"package.json": package, "astro.config.mjs": config}))
    assert built.start == "node dist/server/entry.mjs" and "HOST=0.0.0.0" in final_stage(built)
    vercel = {
        "package.json": {**package, "dependencies": {"astro": "5", "@astrojs/vercel": "8"}},
        "astro.config.mjs": "import v from '@astrojs/vercel';\nexport default {output: 'server'}",
    }
    result = plan(tmp_path / "b", vercel)
    assert not result.ok and "astro.config.mjs: an Astro server needs" in (result.message or "")


def test_react_router_server_and_spa_mode(tmp_path: Path) -> None:
    package = {
        "scripts": {
            "build": "react-router build",
            "dev": "react-router dev",
            "start": "react-router-serve ./build/server/index.js",
        },
        "dependencies": {"@react-router/serve": "7", "react-router": "7"},
        "devDependencies": {"@react-router/dev": "7", "vite": "6"},
    }
    server = ok(
        plan(
            tmp_path / "a",
            {"package.json": package, "react-router.config.ts": "export default { ssr: true }"},
        )
    )
    assert server.start == "npm run start" and "npm prune --omit=dev" in server.dockerfile
    spa = ok(
        plan(
            tmp_path / "b",
            {
                "package.json": {**package, "scripts": {"build": "react-router build"}},
                "react-router.config.ts": "export default { ssr: false }",
            },
        )
    )
    assert "COPY --from=build /app/build/client /srv" in spa.dockerfile


def test_angular_ssr_and_nestjs(tmp_path: Path) -> None:
    angular = {
        "package.json": {
            "name": "shop",
            "scripts": {
                "build": "ng build",
                "start": "ng serve",
                "serve:ssr:shop": "node dist/shop/server/server.mjs",
            },
            "dependencies": {"@angular/core": "19", "@angular/ssr": "19", "express": "4"},
            "devDependencies": {"@angular/cli": "19"},
        },
        "angular.json": {"projects": {"shop": {}}},
    }
    assert ok(plan(tmp_path / "a", angular)).start == "npm run serve:ssr:shop"
    nest = {
        "package.json": {
            "scripts": {
                "build": "nest build",
                "start": "nest start",
                "start:prod": "node dist/main",
            },
            "dependencies": {"@nestjs/core": "10"},
            "devDependencies": {"@nestjs/cli": "10"},
        }
    }
    built = ok(plan(tmp_path / "b", nest))
    assert built.start == "npm run start:prod" and "npm prune --omit=dev" in built.dockerfile


# --- 6. order of steps --------------------------------------------------------------------


def test_prisma_generates_after_the_source_copy(tmp_path: Path) -> None:
    files = {
        "package.json": {
            "scripts": {"build": "tsc", "start": "node dist/index.js"},
            "dependencies": {"@prisma/client": "6"},
            "devDependencies": {"prisma": "6", "typescript": "5"},
        },
        "package-lock.json": "{}",
        "prisma/schema.prisma": "datasource db {}",
    }
    built = ok(plan(tmp_path, files))
    order = lines(built)
    generate = order.index("RUN node_modules/.bin/prisma generate")
    assert order.index("COPY . .") < generate < order.index("RUN npm run build")
    assert not any(line.startswith("COPY prisma") for line in order)
    assert "prisma/schema.prisma: prisma generate runs after the source is copied" in evidence(
        built
    )


def test_lifecycle_scripts_run_after_the_source_copy(tmp_path: Path) -> None:
    files = {
        "package.json": {
            "scripts": {"postinstall": "prisma generate", "prepare": "husky", "start": "node s.js"},
            "dependencies": {"@prisma/client": "6"},
            "devDependencies": {"prisma": "6"},
        },
        "package-lock.json": "{}",
        "prisma/schema.prisma": "",
        "s.js": "",
    }
    built = ok(plan(tmp_path, files))
    order = lines(built)
    install = next(i for i, line in enumerate(order) if "npm ci" in line)
    assert "delete p.scripts[k]" in order[install] and "'postinstall','prepare'" in order[install]
    assert order.index("COPY . .") < order.index("RUN npm run postinstall")
    assert "RUN npm run prepare" not in order  # husky: git hooks only
    assert order.count("RUN node_modules/.bin/prisma generate") == 0  # postinstall does it
    assert "prisma generate runs in the postinstall script" in evidence(built)


# --- 7. images without dev dependencies ---------------------------------------------------


def test_server_image_drops_dev_dependencies(tmp_path: Path) -> None:
    files = {
        "package.json": {
            "scripts": {"build": "tsc", "start": "node dist/s.js"},
            "dependencies": {"express": "4"},
            "devDependencies": {"typescript": "5"},
        },
        "pnpm-lock.yaml": "lockfileVersion: '9.0'\n",
    }
    built = ok(plan(tmp_path, files))
    build_stage, final = built.dockerfile.rsplit("\nFROM ", 1)[0], final_stage(built)
    assert (
        "RUN --mount=type=cache,target=/root/.local/share/pnpm/store pnpm prune --prod"
        in build_stage
    )
    assert "COPY --from=build /app /app" in final
    assert built.start == "npm run start"  # pnpm is not in the runtime image


def test_start_needing_a_dev_dependency_keeps_them(tmp_path: Path) -> None:
    files = {
        "package.json": {
            "scripts": {"start": "tsx server.ts"},
            "dependencies": {"hono": "4"},
            "devDependencies": {"tsx": "4"},
        }
    }
    built = ok(plan(tmp_path, files))
    assert "prune" not in built.dockerfile and " AS runtime" not in built.dockerfile
    assert "the start command runs tsx, from devDependencies" in messages(built)


@pytest.mark.parametrize(
    ("lockfile", "prune"),
    [
        ({"pnpm-lock.yaml": "lockfileVersion: '6.0'\n"}, "pnpm prune --prod\n"),
        ({"pnpm-lock.yaml": "lockfileVersion: '9.0'\n"}, "pnpm prune --prod --ignore-scripts\n"),
        ({"yarn.lock": "# yarn lockfile v1\n"}, "yarn install --production --prefer-offline\n"),
        ({"package-lock.json": "{}"}, "npm prune --omit=dev --ignore-scripts\n"),
    ],
)
def test_prune_command_per_manager(tmp_path: Path, lockfile: dict[str, str], prune: str) -> None:
    files = {
        "package.json": {
            "scripts": {"start": "node s.js"},
            "dependencies": {"a": "1"},
            "devDependencies": {"b": "1"},
        },
        **lockfile,
    }
    assert prune in ok(plan(tmp_path, files)).dockerfile


@pytest.mark.parametrize(
    ("manager", "prune"),
    [
        (
            "berry",
            "RUN --mount=type=cache,target=/root/.yarn/berry/cache yarn workspaces focus "
            "--all --production",
        ),
        (
            "bun",
            "RUN --mount=type=cache,target=/root/.bun/install/cache rm -rf node_modules && "
            "bun install --production --frozen-lockfile",
        ),
    ],
)
def test_yarn_4_and_bun_prune_dev_dependencies(tmp_path: Path, manager: str, prune: str) -> None:
    lockfile = {
        "berry": {"yarn.lock": BERRY_LOCK.format(v=8), ".yarnrc.yml": "nodeLinker: node-modules\n"},
        "bun": {"bun.lock": "{}"},
    }
    files = {
        "package.json": {
            "scripts": {"start": "node s.js"},
            "dependencies": {"a": "1"},
            "devDependencies": {"b": "1"},
        },
        **lockfile[manager],
    }
    built = ok(plan(tmp_path, files))
    build_stage, final = built.dockerfile.split(" AS runtime", 1)
    assert prune in build_stage and "COPY --from=build /app /app" in final
    assert "dev dependencies removed after the build" in evidence(built)
    # The image has no yarn or pnpm: a start script runs through npm (bun's image has bun).
    assert built.start == ("bun run start" if manager == "bun" else "npm run start")


@pytest.mark.parametrize("case", ["berry-prisma", "bun-prisma", "yarn-3", "pnp"])
def test_no_prune_where_it_would_lose_files(tmp_path: Path, case: str) -> None:
    lockfile = {
        "berry-prisma": {
            "yarn.lock": BERRY_LOCK.format(v=8),
            ".yarnrc.yml": "nodeLinker: node-modules\n",
        },
        "bun-prisma": {"bun.lock": "{}"},
        "yarn-3": {
            "yarn.lock": BERRY_LOCK.format(v=6),
            ".yarnrc.yml": "nodeLinker: node-modules\n",
        },
        "pnp": {"yarn.lock": BERRY_LOCK.format(v=8)},  # it runs through yarn
    }
    dependencies = {"a": "1", **({"@prisma/client": "6"} if "prisma" in case else {})}
    files = {
        "package.json": {
            "scripts": {"start": "node s.js"},
            "dependencies": dependencies,
            "devDependencies": {"b": "1"},
        },
        **lockfile[case],
    }
    built = ok(plan(tmp_path, files))
    assert " AS runtime" not in built.dockerfile
    assert "dev dependencies stay in the image" in messages(built)


def test_a_configured_start_needing_a_dev_dependency_keeps_them(tmp_path: Path) -> None:
    files = {
        "package.json": {"dependencies": {"hono": "4"}, "devDependencies": {"tsx": "4"}},
        "Procfile": "web: tsx server.ts\n",
    }
    built = ok(plan(tmp_path, files))
    assert built.start == "tsx server.ts" and " AS runtime" not in built.dockerfile


def test_bun_image_lets_node_scripts_run_on_bun(tmp_path: Path) -> None:
    files = {"package.json": {"scripts": {"start": "bun run s.ts"}}, "bun.lock": "{}"}
    setup = lines(ok(plan(tmp_path, files)))
    assert (
        'RUN command -v node >/dev/null || ln -s "$(command -v bun)" /usr/local/bin/node' in setup
    )


def test_prisma_schema_from_package_json_and_a_missing_one(tmp_path: Path) -> None:
    package = {
        "scripts": {"start": "node s.js"},
        "dependencies": {"@prisma/client": "6"},
        "devDependencies": {"prisma": "6"},
    }
    files = {
        "package.json": {**package, "prisma": {"schema": "db/app.prisma"}},
        "db/app.prisma": "",
    }
    built = ok(plan(tmp_path / "a", files))
    assert "RUN node_modules/.bin/prisma generate" in lines(built)
    assert "db/app.prisma: prisma generate runs after the source is copied" in evidence(built)
    missing = ok(plan(tmp_path / "b", {"package.json": package}))
    assert "prisma generate" not in missing.dockerfile
    assert "no schema was found (prisma/schema.prisma" in messages(missing)


def test_main_made_by_the_build(tmp_path: Path) -> None:
    files = {"package.json": {"main": "dist/index.js", "scripts": {"build": "tsc"}}}
    built = ok(plan(tmp_path / "a", files))
    assert built.start == "node dist/index.js"
    result = plan(tmp_path / "b", {"package.json": {"main": "dist/index.js"}})
    assert not result.ok and "no start command" in (result.message or "")


def test_mise_toml_pins_pnpm(tmp_path: Path) -> None:
    files = {**SERVER, "pnpm-lock.yaml": "lockfileVersion: '9.0'\n",
             "mise.toml": '[tools]\nnode = "22"\npnpm = "latest"\n'}  # fmt: skip
    built = ok(plan(tmp_path, files))
    assert "npm install -g --force pnpm@latest" in built.dockerfile
    assert "mise.toml" in evidence(built)
