"""Steps that must see the source, run after it is copied, so the dependency install stays
cached when only the source changes.

- The app's own lifecycle scripts (`postinstall`, `prepare`, …) often read the source
  (`prisma generate`, `nuxt prepare`, `patch-package`). The install runs on a copy of the
  manifest without them, then they run after `COPY . .` (the real manifest is back then).
- Prisma: `prisma generate` writes the client from the schema. The schema is NOT copied
  with the manifests: it changes with every migration, and each change would reinstall
  every dependency; generating after the source copy costs a second or two per build.
- Scripts that call `bun` in an app another manager installs: bun is installed too.
"""

from __future__ import annotations

import re

from pipeline.plan.app import App
from pipeline.plan.context import PlanContext, Step
from pipeline.plan.providers.node.manifest import Manifest, script_words
from pipeline.plan.providers.node.package_manager import NPM_CACHE, PackageManager

LIFECYCLE = ("preinstall", "install", "postinstall", "prepare")
# Removes the app's own lifecycle scripts from the manifest copy the install sees.
_STRIP = (
    "const f='package.json',p=JSON.parse(require('fs').readFileSync(f,'utf8'));"
    "for(const k of [{keys}])if(p.scripts)delete p.scripts[k];"
    "require('fs').writeFileSync(f,JSON.stringify(p))"
)
PRISMA_SCHEMAS = ("prisma/schema.prisma", "schema.prisma", "prisma/schema")


def lifecycle_scripts(manifest: Manifest) -> list[str]:
    scripts = manifest.scripts()
    return [name for name in LIFECYCLE if scripts.get(name, "").strip()]


def _husky_only(script: str) -> bool:
    """`husky` / `husky install`: git hooks, meaningless without .git."""
    return re.fullmatch(r"\s*(npx\s+)?husky(\s+install)?\s*(\|\|.*)?", script) is not None


def defer_lifecycle(
    manifest: Manifest, manager: PackageManager, ctx: PlanContext
) -> tuple[str | None, list[Step]]:
    """(a command that strips the lifecycle scripts before the install, the steps that run
    them after the source copy). (None, []) when there are none."""
    names = lifecycle_scripts(manifest)
    if not names or manifest.pnpm_only:
        return None, []
    scripts = manifest.scripts()
    runtime = "bun" if manager.on_bun_image else "node"
    strip = f'{runtime} -e "{_STRIP.format(keys=",".join(repr(n) for n in names))}"'
    steps = []
    for name in names:
        if name == "prepare" and _husky_only(scripts[name]):
            ctx.info(f"{manifest.file} prepare ({scripts[name]}) only sets up git hooks: not run")
            continue
        steps.append(Step(manager.run(name)))
    ctx.decided(
        manifest.file,
        f"{', '.join(names)} script(s) run after the source is copied (they may read it), "
        "so a source-only change keeps the dependency install cached",
    )
    return strip, steps


def prisma_schema(app: App, manifest: Manifest) -> str | None:
    config = manifest.data.get("prisma")
    if isinstance(config, dict) and isinstance(config.get("schema"), str):
        declared = str(config["schema"]).removeprefix("./")
        if app.has_file(declared) or app.has_dir(declared):
            return declared
    if app.has_file("prisma.config.ts"):
        return "prisma.config.ts"
    return next((path for path in PRISMA_SCHEMAS if app.has_file(path) or app.has_dir(path)), None)


def prisma_generate(
    app: App, manifest: Manifest, manager: PackageManager, ctx: PlanContext, deferred: list[Step]
) -> Step | None:
    if not manifest.has("prisma", "@prisma/client"):
        return None
    schema = prisma_schema(app, manifest)
    if schema is None:
        ctx.warning(
            f"{manifest.file} depends on Prisma but no schema was found (prisma/schema.prisma, "
            'or "prisma": {"schema": …} in package.json): the client is not generated'
        )
        return None
    scripts = manifest.scripts()
    generated_by = [
        name
        for name in (*LIFECYCLE, "build")
        if "prisma generate" in scripts.get(name, "")
        and (name == "build" or any(manager.run(name) == step.command for step in deferred))
    ]
    if generated_by:
        ctx.decided(schema, f"prisma generate runs in the {generated_by[0]} script")
        return None
    if not manifest.has("prisma"):
        ctx.warning(
            f'{manifest.file}: @prisma/client without "prisma" (the CLI) in devDependencies: '
            "the client cannot be generated; add prisma to devDependencies"
        )
        return None
    ctx.decided(
        schema,
        "prisma generate runs after the source is copied (the schema is not copied with the "
        "manifests: a schema change would reinstall every dependency)",
    )
    return Step(manager.bin("prisma generate"))


def scripts_calling_bun(manifest: Manifest) -> list[str]:
    return [
        name
        for name, script in manifest.scripts().items()
        if any(word in ("bun", "bunx") for word in script_words(script))
    ]


def bun_for_scripts(manifest: Manifest, manager: PackageManager, ctx: PlanContext) -> Step | None:
    """Install bun when a script calls it and another manager installs the app."""
    if manager.name == "bun":
        return None
    names = scripts_calling_bun(manifest)
    if not names:
        return None
    ctx.decided(
        manifest.file,
        f"script(s) {', '.join(names)} call bun: bun is installed too (npm package bun)",
    )
    return Step("npm install -g --force bun@1", (NPM_CACHE,))
