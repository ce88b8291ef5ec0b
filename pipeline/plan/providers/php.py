"""PHP: the built-in server (`php -S 0.0.0.0:$PORT -t <docroot>`, which answers unknown
paths with the docroot's index.php, as Symfony's front controller needs), Laravel's
`php artisan serve`; Composer runs in a `composer` stage when composer.json requires
packages or has an autoloader."""

from __future__ import annotations

from typing import Any

from pipeline.plan.app import App
from pipeline.plan.context import Layout, PlanContext, RuntimeStage, Step
from pipeline.plan.versions import resolve

DEFAULT_PHP = "8.4"
COMPOSER_CACHE = "/root/.cache/composer"
DOCROOTS = ("public", "web", "public_html", "htdocs")
# Extensions compiled into the official php CLI image (php -m).
BUILTIN_EXTENSIONS = {
    "core", "ctype", "curl", "date", "dom", "fileinfo", "filter", "hash", "iconv", "json",
    "libxml", "mbstring", "mysqlnd", "openssl", "pcre", "pdo", "pdo_sqlite", "phar", "posix",
    "random", "readline", "reflection", "session", "simplexml", "sodium", "spl", "sqlite3",
    "standard", "tokenizer", "xml", "xmlreader", "xmlwriter", "zlib",
}  # fmt: skip


def _is_platform(name: str) -> bool:
    lowered = name.lower()
    return lowered in (
        "php",
        "php-64bit",
        "composer",
        "composer-plugin-api",
        "composer-runtime-api",
    ) or (lowered.startswith(("ext-", "lib-")))


class PhpProvider:
    name = "php"
    looks_for = ("composer.json", "index.php")
    start_help = 'add an index.php (or public/index.php), or set start = "…" in click-deploy.toml'

    def detect(self, app: App) -> bool:
        return app.has_any("composer.json", "index.php", "public/index.php")

    def plan(self, app: App, ctx: PlanContext) -> None:
        composer: dict[str, Any] = (
            app.read_json_object("composer.json") if app.has_file("composer.json") else {}
        )
        require = composer.get("require") if isinstance(composer.get("require"), dict) else {}
        assert isinstance(require, dict)
        platform = ((composer.get("config") or {}).get("platform") or {}).get("php")
        version, notes = resolve(
            app,
            "php",
            default=DEFAULT_PHP,
            parts=2,
            exact_files=(".php-version",),
            tool_names=("php",),
            constraints=(
                ("composer.json config.platform.php", str(platform or "")),
                ("composer.json require.php", str(require.get("php") or "")),
            ),
        )
        for note in notes:
            ctx.warning(note)
        said = version.evidence("php")
        if said:
            ctx.decided(version.source or "", said.split(": ", 1)[1])
        else:
            ctx.info(f"no php version given (composer.json require.php): using {version.value}")
        ctx.runtime = "php"
        ctx.version = version.value

        missing = sorted(
            name.removeprefix("ext-")
            for name in require
            if name.lower().startswith("ext-")
            and name.lower().removeprefix("ext-") not in BUILTIN_EXTENSIONS
        )
        if missing:
            ctx.warning(
                f"composer.json requires {', '.join('ext-' + m for m in missing)}, which the "
                "php image does not have; use a Dockerfile (docker-php-ext-install) or "
                "BASE_IMAGE_PHP with them"
            )
        if app.has_file("package.json"):
            ctx.info("package.json found: its assets are not built by the php plan")

        docroot = next((d for d in DOCROOTS if app.has_file(f"{d}/index.php")), ".")
        if docroot == "." and not app.has_file("index.php") and app.has_dir("public"):
            docroot = "public"
        ctx.decided(
            "index.php" if docroot == "." else f"{docroot}/index.php", f"document root {docroot}"
        )
        if not app.has_file("index.php" if docroot == "." else f"{docroot}/index.php"):
            ctx.warning(f"no index.php in {docroot}/: / will answer 404")
        start = f"php -S 0.0.0.0:$PORT -t {docroot}"
        writable: list[str] = []
        runtime_env: dict[str, str] = {}
        if app.has_file("artisan") and docroot == "public":
            start = "php artisan serve --host 0.0.0.0 --port $PORT"
            writable = ["storage", "bootstrap/cache"]
            ctx.decided("artisan", f"Laravel → {start}")
        elif app.has_file("config/bundles.php") or app.has_file("symfony.lock"):
            writable = ["var"]
            runtime_env = {"APP_ENV": "prod"}
            ctx.decided(
                "config/bundles.php" if app.has_file("config/bundles.php") else "symfony.lock",
                f"Symfony → {start} (APP_ENV=prod)",
            )

        packages = [name for name in require if not _is_platform(name)]
        autoload = bool(composer.get("autoload"))
        locked = app.has_file("composer.lock")
        image = ctx.image("php", version.value)
        if not packages and not autoload and not locked:
            if composer:
                ctx.decided("composer.json", "no packages to install: no composer stage")
            ctx.layout = Layout(
                image=image, start=start, writable=writable, runtime_env=runtime_env
            )
            return

        manifests = ["composer.json"] + (["composer.lock"] if locked else [])
        install = None
        if packages or locked:
            install = Step(
                "composer install --no-dev --no-interaction --no-progress --prefer-dist "
                "--no-scripts --no-autoloader --ignore-platform-reqs",
                (COMPOSER_CACHE,),
            )
            ctx.decided(
                "composer.lock" if locked else "composer.json",
                f"composer installs {len(packages)} package(s) in a composer stage",
            )
            if not locked:
                ctx.suggestion("commit composer.lock for repeatable builds")
        else:
            ctx.decided("composer.json", "autoload only: composer dumps the autoloader")
        ctx.layout = Layout(
            image=ctx.image("composer"),
            stage="composer",
            env={
                "COMPOSER_ALLOW_SUPERUSER": "1",
                "COMPOSER_CACHE_DIR": COMPOSER_CACHE,
                "COMPOSER_NO_INTERACTION": "1",
            },
            manifests=manifests,
            install=install,
            after_source=[
                Step("composer dump-autoload --optimize --no-dev --ignore-platform-reqs")
            ],
            runtime=RuntimeStage(image=image, copies=[("/app", "/app")]),
            runtime_env=runtime_env,
            writable=writable,
            start=start,
        )
