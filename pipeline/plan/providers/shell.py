"""A shell app: a repository whose entry is `start.sh`, run with its own interpreter (`sh`,
or `bash` when its first line asks for it) on a plain Debian image. Executable or not, it
is started through the shell, so a missing x bit cannot stop it. A script that never
mentions $PORT serves nothing there: a worker."""

from __future__ import annotations

import re

from pipeline.plan.app import App
from pipeline.plan.context import Layout, PlanContext

START_FILES = ("start.sh", "run.sh", "scripts/start.sh")
_SHEBANG = re.compile(r"^#!\s*(?:/usr/bin/env\s+)?(?:\S*/)?(bash|sh|dash)\b")


class ShellProvider:
    name = "shell"
    looks_for = ("start.sh",)
    start_help = 'add a start.sh, or set start = "…" under [build] in click-deploy.toml'

    def detect(self, app: App) -> bool:
        return app.has_any(*START_FILES)

    def plan(self, app: App, ctx: PlanContext) -> None:
        script = app.first_file(*START_FILES)
        ctx.runtime = "shell"
        ctx.version = None
        layout = Layout(image=ctx.image("runtime"))
        if script is not None:
            text = app.read_text(script)
            shebang = _SHEBANG.match(text)
            shell = "bash" if shebang and shebang.group(1) == "bash" else "sh"
            layout.start = f"{shell} {script}"
            ctx.decided(script, f"the start script → {layout.start}")
            code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
            if "PORT" not in code:
                layout.worker = True
                ctx.decided(script, "it never reads $PORT: a worker")
            if shebang is None and text.startswith("#!"):
                ctx.warning(
                    f"{script} asks for {text.splitlines()[0][2:].strip()}, which the Debian "
                    'image may lack; it runs with sh (set start = "…" to choose)'
                )
        ctx.layout = layout
