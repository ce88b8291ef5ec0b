"""Go workspaces, shell apps, Ruby lockfiles made elsewhere, static-site settings, PHP
frameworks, native npm modules."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_plan import plan_files, planned

MAIN = "package main\n\nfunc main() {}\n"


def test_go_workspace_builds_the_module_with_a_main_package(tmp_path: Path) -> None:
    files = {
        "go.work": "go 1.22\n\nuse (\n\t./lib\n\t./api // the server\n)\n",
        "lib/go.mod": "module example.com/lib\n\ngo 1.22\n",
        "lib/lib.go": "package lib\n",
        "api/go.mod": "module example.com/api\n\ngo 1.22\n",
        "api/main.go": MAIN,
    }
    plan = planned(plan_files(tmp_path, files))
    assert (plan.runtime, plan.version) == ("go", "1.22")
    assert plan.build is not None and plan.build.endswith("-o /app/server ./api")
    # Members require each other: go build resolves them from the workspace, so there is
    # no `go mod download` (it would ask the module proxy for them).
    assert "go mod download" not in plan.dockerfile
    assert "--mount=type=cache,target=/go/pkg/mod" in plan.dockerfile
    assert "go.work: main package ./api" in plan.evidence


def test_go_workspace_with_several_mains_says_which_setting_decides(tmp_path: Path) -> None:
    files = {
        "go.work": "go 1.22\nuse ./api\nuse ./tools\n",
        "api/go.mod": "module a\n", "api/main.go": MAIN,
        "tools/go.mod": "module t\n", "tools/cmd/gen/main.go": MAIN,
    }  # fmt: skip
    plan = planned(plan_files(tmp_path / "two", files))
    assert plan.build is not None and plan.build.endswith(" ./api")
    warning = next(m.text for m in plan.messages if m.level == "warning")
    assert "./tools/cmd/gen" in warning and 'set build = "go build' in warning
    none = plan_files(tmp_path / "none", {"go.work": "use ./lib\n", "lib/go.mod": "module l\n"})
    assert not none.ok and "none with a main package" in (none.message or "")


def test_a_lone_start_script_is_a_shell_app(tmp_path: Path) -> None:
    plan = planned(plan_files(tmp_path / "sh", {"start.sh": "echo hi\n"}))
    assert (plan.runtime, plan.start) == ("shell", "sh start.sh")
    assert "FROM debian:bookworm-slim" in plan.dockerfile
    bash = planned(plan_files(tmp_path / "bash", {"start.sh": "#!/usr/bin/env bash\necho\n"}))
    assert bash.start == "bash start.sh"
    # every other kind of app may carry a start.sh: they come first
    python = planned(plan_files(tmp_path / "py", {"start.sh": "", "main.py": ""}))
    assert python.runtime == "python"


MAC_LOCK = """\
GEM
  remote: https://rubygems.org/
  specs:
    rack (3.0.8)

PLATFORMS
  arm64-darwin-22

DEPENDENCIES
  rack
"""


def test_a_lockfile_made_on_a_mac_gets_the_linux_platform(tmp_path: Path) -> None:
    files = {"Gemfile": 'gem "rack"\ngem "puma"\n', "Gemfile.lock": MAC_LOCK, "config.ru": ""}
    plan = planned(plan_files(tmp_path / "mac", files))
    assert plan.install == (
        "bundle lock --add-platform x86_64-linux && BUNDLE_FROZEN=true bundle install --jobs 4"
    )
    linux = {
        **files,
        "Gemfile.lock": MAC_LOCK.replace("arm64-darwin-22", "arm64-darwin-22\n  x86_64-linux"),
    }
    plan = planned(plan_files(tmp_path / "linux", linux))
    assert plan.install == "BUNDLE_FROZEN=true bundle install --jobs 4"


def test_staticfile_pushstate_answers_index_html(tmp_path: Path) -> None:
    files = {"Staticfile": "root: dist\npushstate: enabled\n", "dist/index.html": ""}
    plan = planned(plan_files(tmp_path, files))
    assert "try_files {path} /index.html" in plan.dockerfile
    assert plan.start == "caddy run --config /etc/caddy/Caddyfile --adapter caddyfile"
    assert "COPY --from=site /site/dist /srv" in plan.dockerfile
    plain = planned(plan_files(tmp_path / "plain", {"Staticfile": "root: .\n", "index.html": ""}))
    assert "try_files" not in plain.dockerfile


def test_a_repository_caddyfile_configures_caddy(tmp_path: Path) -> None:
    files = {"Caddyfile": ":{$PORT}\nroot * /srv\nfile_server\n", "index.html": ""}
    plan = planned(plan_files(tmp_path / "ok", files))
    assert "mv Caddyfile /etc/caddy/Caddyfile" in plan.dockerfile
    assert "COPY --from=site /etc/caddy/Caddyfile /etc/caddy/Caddyfile" in plan.dockerfile
    assert plan.start == "caddy run --config /etc/caddy/Caddyfile --adapter caddyfile"
    assert not any(m.level == "warning" for m in plan.messages)
    fixed = planned(plan_files(tmp_path / "80", {"Caddyfile": ":80\nfile_server\n"}))
    assert any("{$PORT}" in m.text for m in fixed.messages if m.level == "warning")


def test_php_frameworks(tmp_path: Path) -> None:
    laravel = {"artisan": "", "public/index.php": "", "composer.json": "{}"}
    plan = planned(plan_files(tmp_path / "laravel", laravel))
    assert plan.start == "php artisan serve --host 0.0.0.0 --port $PORT"
    assert "chown -R 10001:10001 storage bootstrap/cache" in plan.dockerfile
    symfony = {"config/bundles.php": "", "public/index.php": "", "composer.json": "{}"}
    plan = planned(plan_files(tmp_path / "symfony", symfony))
    assert plan.start == "php -S 0.0.0.0:$PORT -t public" and "APP_ENV=prod" in plan.dockerfile


def test_native_npm_modules_get_a_compiler(tmp_path: Path) -> None:
    package = {"scripts": {"start": "node s.js"}, "dependencies": {"better-sqlite3": "^11"}}
    plan = planned(plan_files(tmp_path, {"package.json": json.dumps(package)}))
    assert "apt-get install -y --no-install-recommends python3 make g++" in plan.dockerfile
    assert any("better-sqlite3 needs Debian packages" in line for line in plan.evidence)


def test_a_start_script_that_never_reads_the_port_is_a_worker(tmp_path: Path) -> None:
    worker = planned(
        plan_files(tmp_path / "w", {"start.sh": "# no PORT here\nwhile :; do sleep 60; done\n"})
    )
    assert worker.kind == "worker"
    web = planned(plan_files(tmp_path / "web", {"start.sh": 'exec ./server --port "$PORT"\n'}))
    assert web.kind == "web"


def test_sinatra_without_a_server_gem_is_warned_about(tmp_path: Path) -> None:
    lock = "GEM\n  specs:\n    sinatra (4.0.0)\n\nPLATFORMS\n  ruby\n"
    files = {"Gemfile": 'gem "sinatra"\n', "Gemfile.lock": lock, "app.rb": ""}
    plan = planned(plan_files(tmp_path / "bare", files))
    assert any('gem "rackup"' in m.text for m in plan.messages if m.level == "warning")
    served = lock.replace("    sinatra", "    puma (6.4.2)\n    rackup (2.1.0)\n    sinatra")
    plan = planned(plan_files(tmp_path / "served", {**files, "Gemfile.lock": served}))
    assert not any(m.level == "warning" for m in plan.messages)


def test_go_workspace_with_the_root_module_in_it(tmp_path: Path) -> None:
    files = {
        "go.work": "go 1.22\n\nuse (\n\t.\n\t./lib\n)\n",
        "go.mod": "module example.com/app\n\ngo 1.22\n",
        "main.go": MAIN,
        "lib/go.mod": "module example.com/lib\n\ngo 1.22\n",
        "lib/lib.go": "package lib\n",
    }
    plan = planned(plan_files(tmp_path, files))
    assert plan.build is not None and plan.build.endswith("-o /app/server .")
    assert "go mod download" not in plan.dockerfile and "COPY . ." in plan.dockerfile
