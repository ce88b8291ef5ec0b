"""Ruby: Bundler installs the Gemfile; Rails, any config.ru (puma or rackup, whichever the
Gemfile has), Sinatra, or a main file such as app.rb."""

from __future__ import annotations

import re

from pipeline.plan.app import App
from pipeline.plan.context import Layout, PlanContext, Step
from pipeline.plan.versions import resolve

DEFAULT_RUBY = "3.3"
BUNDLE_CACHE = "/root/.bundle/cache"
MAIN_FILES = ("app.rb", "main.rb", "server.rb", "application.rb")
# Gems that compile C extensions: the slim image needs a compiler (and sometimes headers).
NATIVE_GEMS = {
    "puma": [], "nio4r": [], "bcrypt": [], "ffi": [], "msgpack": [], "bootsnap": [],
    "websocket-driver": [], "racc": [], "json": [], "date": [], "io-console": [],
    "psych": ["libyaml-dev"], "pg": ["libpq-dev"], "mysql2": ["default-libmysqlclient-dev"],
    "sqlite3": ["libsqlite3-dev"], "nokogiri": [], "debug": [], "stringio": [], "bigdecimal": [],
}  # fmt: skip
_GEM = re.compile(r"""^\s*gem\s+['"]([\w.-]+)['"]""", re.MULTILINE)
_LOCKED_GEM = re.compile(r"^    ([\w.-]+) \(", re.MULTILINE)
_PLATFORMS = re.compile(r"^PLATFORMS\n((?:  \S.*\n?)+)", re.MULTILINE)


def lock_platforms(lock: str) -> list[str]:
    """The PLATFORMS section of a Gemfile.lock."""
    match = _PLATFORMS.search(lock)
    return match.group(1).split() if match else []


def runs_on_linux(platforms: list[str]) -> bool:
    """A lock bundler can install on x86_64 Linux as it is: the generic `ruby` platform
    or a Linux one. No PLATFORMS section (a very old lock) is left to bundler."""
    return not platforms or any(p == "ruby" or "linux" in p for p in platforms)


_RUBY_LINE = re.compile(r"""^\s*ruby\s+['"]([^'"]+)['"]""", re.MULTILINE)


class RubyProvider:
    name = "ruby"
    looks_for = ("Gemfile",)
    start_help = (
        'add a config.ru or an app.rb, a Procfile with a web: line, or start = "…" under '
        "[build] in click-deploy.toml"
    )

    def detect(self, app: App) -> bool:
        return app.has_file("Gemfile")

    def plan(self, app: App, ctx: PlanContext) -> None:
        gemfile = app.read_text("Gemfile")
        lock = app.read_optional("Gemfile.lock")
        gemfile_ruby = _RUBY_LINE.search(gemfile)
        version, notes = resolve(
            app,
            "ruby",
            default=DEFAULT_RUBY,
            parts=2,
            exact_files=(".ruby-version",),
            tool_names=("ruby",),
            constraints=(("Gemfile", gemfile_ruby.group(1) if gemfile_ruby else ""),),
        )
        for note in notes:
            ctx.warning(note)
        said = version.evidence("ruby")
        if said:
            ctx.decided(version.source or "", said.split(": ", 1)[1])
        else:
            ctx.info(f"no ruby version given (.ruby-version, Gemfile ruby): using {version.value}")
        ctx.runtime = "ruby"
        ctx.version = version.value

        gems = set(_GEM.findall(gemfile))
        locked = set(_LOCKED_GEM.findall(lock)) if lock else set()
        everything = gems | locked
        layout = Layout(
            image=ctx.image("ruby", version.value),
            env={
                "BUNDLE_WITHOUT": "development:test",
                "BUNDLE_PATH": "/usr/local/bundle",
                "BUNDLE_GLOBAL_GEM_CACHE": "true",
            },
            runtime_env={"RACK_ENV": "production", "RAILS_ENV": "production"},
        )
        bundle = ""
        if gems:
            bundle = "bundle exec "
            layout.manifests = ["Gemfile"] + (["Gemfile.lock"] if lock else [])
            frozen = "BUNDLE_FROZEN=true " if lock else ""
            platforms = lock_platforms(lock) if lock else []
            add_platform = ""
            if lock and not runs_on_linux(platforms):
                add_platform = "bundle lock --add-platform x86_64-linux && "
                ctx.decided(
                    "Gemfile.lock",
                    f"PLATFORMS {', '.join(platforms)} has no Linux platform: "
                    "bundle lock --add-platform x86_64-linux first",
                )
                ctx.suggestion(
                    "run `bundle lock --add-platform x86_64-linux` and commit Gemfile.lock, "
                    "so the build installs exactly what is locked"
                )
            layout.install = Step(f"{add_platform}{frozen}bundle install --jobs 4", (BUNDLE_CACHE,))
            ctx.decided("Gemfile.lock" if lock else "Gemfile", "bundler installs the gems")
            if not lock:
                ctx.suggestion("commit Gemfile.lock for repeatable builds")
            native = sorted(everything & set(NATIVE_GEMS))
            if native:
                packages = ["build-essential"]
                for gem in native:
                    packages += [p for p in NATIVE_GEMS[gem] if p not in packages]
                layout.apt_packages = packages
                ctx.decided(
                    "Gemfile.lock" if lock else "Gemfile",
                    f"{', '.join(native)} compile(s) native code: apt installs "
                    f"{', '.join(packages)}",
                )
        else:
            ctx.decided("Gemfile", "no gems: nothing to install")

        if "rails" in everything and app.has_file("config/application.rb"):
            layout.start = f"{bundle}rails server -b 0.0.0.0 -p $PORT"
            ctx.decided("config/application.rb", f"Rails → {layout.start}")
            layout.runtime_env.update({"RAILS_LOG_TO_STDOUT": "1", "RAILS_SERVE_STATIC_FILES": "1"})
            layout.writable = ["tmp", "log", "storage"]
            if app.has_dir("app/assets") or app.has_dir("app/javascript"):
                layout.build_env = {"SECRET_KEY_BASE_DUMMY": "1"}
                layout.build = Step(f"{bundle}rails assets:precompile")
                ctx.decided("app/assets", "assets are precompiled")
        elif app.has_file("config.ru"):
            if "puma" in everything:
                config = " -C config/puma.rb" if app.has_file("config/puma.rb") else ""
                layout.start = f"{bundle}puma{config} -b tcp://0.0.0.0:$PORT"
            elif "rackup" in everything or "rack" in everything:
                layout.start = f"{bundle}rackup config.ru -o 0.0.0.0 -p $PORT"
            else:
                ctx.fail(
                    "config.ru found but the Gemfile has neither puma nor rack(up) to serve it: "
                    'add gem "puma" to the Gemfile'
                )
                return
            ctx.decided("config.ru", f"Rack app → {layout.start}")
        else:
            main = app.first_file(*MAIN_FILES)
            if main is not None:
                sinatra = " -o 0.0.0.0 -p $PORT" if "sinatra" in everything else ""
                layout.start = f"{bundle}ruby {main}{sinatra}"
                ctx.decided(main, f"main file → {layout.start}")
                servers = {"puma", "webrick", "thin", "falcon"}
                if sinatra and lock and not (locked & servers and "rackup" in locked):
                    ctx.warning(
                        "Gemfile.lock has no rackup and web server gem: Sinatra 4 does not "
                        f'start {main} without them; add gem "rackup" and gem "puma" '
                        "to the Gemfile"
                    )
        ctx.layout = layout
