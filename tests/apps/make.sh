#!/usr/bin/env bash
# Regenerates the apps under tests/apps/ with the frameworks' own generators (npm and PyPI
# packages, versions pinned below), then trims what must not be committed (node_modules,
# .venv, .git). The committed apps are what the tests and scripts/corpus use; run this only
# to move to newer generator versions, then review the diff and the check.json files.
#
# Usage: tests/apps/make.sh [NAME...]     (no NAME: every app)
#
# Needs: node >= 22.12 and npm on PATH (Angular CLI, Nuxt and Astro ask for it; scripts/infra
# caches one under /var/cache/cd-infra/npm), python3. Generator tools for Python go into a
# scratch virtualenv. Generators that fetch their templates from GitHub (create-astro,
# nuxi init, create-react-router) cannot run where only the package registries are
# reachable: those apps are written by hand the way the framework's docs/starter show
# (README.md says which).
set -euo pipefail

APPS=$(cd "$(dirname "$0")" && pwd)
WORK=${CD_APPS_WORK:-$(mktemp -d /tmp/cd-apps.XXXXXX)}
TOOLS=$WORK/.tools
export npm_config_yes=true npm_config_fund=false npm_config_audit=false
export NEXT_TELEMETRY_DISABLED=1 NG_CLI_ANALYTICS=false ASTRO_TELEMETRY_DISABLED=1
export NUXT_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1

CREATE_VITE=create-vite@9.3.0
CREATE_NEXT_APP=create-next-app@16.4.3
SV=sv@0.17.1
ANGULAR_CLI=@angular/cli@22.2.7
NEST_CLI=@nestjs/cli@12.0.8
EXPRESS_GENERATOR=express-generator@4.16.1
BUN=bun@1.4.5
PY_TOOLS=(uv==0.13.9 poetry==2.5.1 pdm==2.29.4 pipenv==2026.10.3 django==5.2.19
    'hishel[httpx2]==1.4.0' # pdm 2.29 breaks with hishel 2 ("no attribute 'SyncSqliteStorage'")
)

say() { printf 'make-apps: %s\n' "$*" >&2; }

# keep NAME: copy $WORK/NAME into tests/apps/NAME, without installed or generated state.
keep() {
    local name=$1
    rm -rf "${APPS:?}/$name.new"
    rsync -a --exclude node_modules --exclude .venv --exclude .git --exclude .svelte-kit \
        --exclude .next --exclude dist --exclude build --exclude .angular --exclude .nuxt \
        --exclude .output --exclude __pycache__ --exclude .pdm-python --exclude .DS_Store \
        "$WORK/$name/" "$APPS/$name.new/"
    # check.json is ours, not the generator's: keep the committed one.
    [ -f "$APPS/$name/check.json" ] && cp "$APPS/$name/check.json" "$APPS/$name.new/"
    rm -rf "${APPS:?}/$name"
    mv "$APPS/$name.new" "$APPS/$name"
    say "$name: done"
}

lock_npm() { (cd "$WORK/$1" && npm install --package-lock-only --ignore-scripts >/dev/null); }

python_tools() {
    [ -x "$TOOLS/bin/uv" ] && return
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/pip" install -q "${PY_TOOLS[@]}"
}

# ------------------------------------------------------------------ Node: generators

vite() { # NAME TEMPLATE
    (cd "$WORK" && npx "$CREATE_VITE" "$1" --template "$2" --no-interactive </dev/null >/dev/null)
    lock_npm "$1"
    keep "$1"
}
app_vite_react_ts() { vite vite-react-ts react-ts; }
app_vite_vue() { vite vite-vue vue; }
app_vite_svelte() { vite vite-svelte svelte; }
app_vite_vanilla() { vite vite-vanilla vanilla; }

next() { # NAME [OUTPUT]
    (cd "$WORK" && npx "$CREATE_NEXT_APP" "$1" --ts --app --eslint --no-tailwind --no-src-dir \
        --no-react-compiler --import-alias '@/*' --use-npm --skip-install --disable-git \
        --no-agents-md --no-agent-feedback --yes </dev/null >/dev/null)
    if [ -n "${2:-}" ]; then
        # The docs' way: next.config.ts says the output mode.
        sed -i "s|/\* config options here \*/|output: \"$2\",|" "$WORK/$1/next.config.ts"
        grep -q "output: \"$2\"" "$WORK/$1/next.config.ts" || {
            say "$1: next.config.ts has no 'config options here' placeholder"
            exit 1
        }
    fi
    if [ "${2:-}" = export ]; then
        # A static export cannot prerender partially (the build stops with "PPR cannot be
        # enabled in export mode"): the template's cacheComponents/partialPrefetching go.
        sed -i '/cacheComponents: true,/d; /partialPrefetching: true,/d' "$WORK/$1/next.config.ts"
    fi
    # The template's fonts come from Google Fonts at build time, unreachable where only the
    # package registries are: the same Geist fonts from Vercel's npm package `geist`
    # (next/font/local), as its README shows.
    geist_from_npm "$WORK/$1"
    lock_npm "$1"
    keep "$1"
}
geist_from_npm() { # APP_DIR
    (cd "$1" && npm pkg set dependencies.geist=^1.9.2)
    cat >"$1/app/fonts.ts" <<'EOF_FONTS'
import { GeistMono } from "geist/font/mono";
import { GeistSans } from "geist/font/sans";

export const geistSans = GeistSans;
export const geistMono = GeistMono;
EOF_FONTS
    python3 - "$1/app/layout.tsx" <<'EOF_PY'
import re, sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
text = text.replace('import { Geist, Geist_Mono } from "next/font/google";\n',
                    'import { geistMono, geistSans } from "./fonts";\n')
text = re.sub(r"const geist(Sans|Mono) = Geist(_Mono)?\(\{.*?\}\);\n\n", "", text, flags=re.S)
open(path, "w", encoding="utf-8").write(text)
EOF_PY
    ! grep -q next/font/google "$1/app/layout.tsx"
}
app_next_default() { next next-default; }
app_next_standalone() { next next-standalone standalone; }
app_next_export() { next next-export export; }

sveltekit() { # NAME ADAPTER
    (cd "$WORK" && npx "$SV" create "$1" --template minimal --types ts \
        --add "sveltekit-adapter=adapter:$2" --no-install --no-dir-check --no-download-check \
        </dev/null >/dev/null)
    if [ "$2" = static ]; then
        # adapter-static needs every page prerendered (its docs: a root +layout.ts).
        printf 'export const prerender = true;\n' >"$WORK/$1/src/routes/+layout.ts"
    fi
    lock_npm "$1"
    keep "$1"
}
app_sveltekit_node() { sveltekit sveltekit-node node; }
app_sveltekit_static() { sveltekit sveltekit-static static; }

app_angular() {
    (cd "$WORK" && npx -p "$ANGULAR_CLI" ng new angular --defaults --skip-git --skip-install \
        --ssr=false --style=css --zoneless --ai-config=none --package-manager=npm \
        </dev/null >/dev/null)
    lock_npm angular
    keep angular
}

app_nest() {
    (cd "$WORK" && npx -p "$NEST_CLI" nest new nest --package-manager npm --skip-git \
        --skip-install </dev/null >/dev/null)
    lock_npm nest
    keep nest
}

app_express() {
    (cd "$WORK" && npx -p "$EXPRESS_GENERATOR" express --view=pug express </dev/null >/dev/null)
    lock_npm express
    keep express
}

app_bun() {
    mkdir -p "$WORK/bun"
    (cd "$WORK/bun" && npx -p "$BUN" bun init -y </dev/null >/dev/null)
    # bun init's index.ts prints a line; the docs' HTTP server (Bun.serve) makes it a web app.
    cat >"$WORK/bun/index.ts" <<'EOF'
const server = Bun.serve({
  port: Number(process.env.PORT ?? 3000),
  fetch() {
    return new Response("Hello via Bun!");
  },
});

console.log(`Listening on ${server.url}`);
EOF
    keep bun
}

# ------------------------------------------------------------------ Node: from the docs
# (their generators download templates from GitHub)

app_nuxt() { cp -r "$APPS/nuxt" "$WORK/nuxt" && (cd "$WORK/nuxt" && rm -f package-lock.json) && lock_npm nuxt && keep nuxt; }
app_astro() { cp -r "$APPS/astro" "$WORK/astro" && (cd "$WORK/astro" && rm -f package-lock.json) && lock_npm astro && keep astro; }
app_react_router() {
    cp -r "$APPS/react-router" "$WORK/react-router"
    (cd "$WORK/react-router" && rm -f package-lock.json)
    lock_npm react-router
    keep react-router
}

# ------------------------------------------------------------------ Python

app_django() {
    python_tools
    mkdir -p "$WORK/django"
    (cd "$WORK/django" && "$TOOLS/bin/django-admin" startproject mysite .)
    printf 'Django==%s\ngunicorn==23.0.0\n' "$("$TOOLS/bin/python" -c 'import django; print(django.__version__)')" \
        >"$WORK/django/requirements.txt"
    keep django
}

app_uv_app() {
    python_tools
    (cd "$WORK" && "$TOOLS/bin/uv" init --app --no-package --no-workspace --vcs none --author-from none --python 3.11 uv-app >/dev/null 2>&1)
    (cd "$WORK/uv-app" && "$TOOLS/bin/uv" add --no-sync 'rich>=13' >/dev/null 2>&1)
    cat >"$WORK/uv-app/main.py" <<'EOF'
import time

from rich.console import Console


def main() -> None:
    console = Console()
    console.print("Hello from uv-app!")
    # A worker: no port, no HTTP; it stays up doing its job.
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
EOF
    keep uv-app
}

app_uv_package() {
    python_tools
    (cd "$WORK" && "$TOOLS/bin/uv" init --package --no-workspace --vcs none --author-from none --python 3.11 uv-package >/dev/null 2>&1)
    (cd "$WORK/uv-package" && "$TOOLS/bin/uv" add --no-sync 'uvicorn>=0.30' 'starlette>=0.40' >/dev/null 2>&1)
    cat >"$WORK/uv-package/src/uv_package/__init__.py" <<'EOF'
import os

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def homepage(request):
    return PlainTextResponse("Hello from uv-package!")


app = Starlette(routes=[Route("/", homepage)])


def main() -> None:
    uvicorn.run(app, host="0.0.0.0", port=int(os.environ.get("PORT", "8000")))
EOF
    keep uv-package
}

app_poetry_app() {
    python_tools
    (cd "$WORK" && "$TOOLS/bin/poetry" new --flat poetry-app >/dev/null)
    (cd "$WORK/poetry-app" && "$TOOLS/bin/poetry" add --lock flask gunicorn >/dev/null)
    cat >"$WORK/poetry-app/app.py" <<'EOF'
from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello from Poetry!"
EOF
    keep poetry-app
}

app_pdm_app() {
    python_tools
    mkdir -p "$WORK/pdm-app"
    (cd "$WORK/pdm-app" && "$TOOLS/bin/pdm" init -n --python 3.11 >/dev/null 2>&1 &&
        "$TOOLS/bin/pdm" add --no-sync fastapi uvicorn >/dev/null 2>&1)
    cat >"$WORK/pdm-app/main.py" <<'EOF'
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def read_root():
    return {"message": "Hello from PDM"}
EOF
    rm -rf "$WORK/pdm-app/.pdm-python"
    keep pdm-app
}

app_pipfile() {
    python_tools
    mkdir -p "$WORK/pipfile"
    cat >"$WORK/pipfile/app.py" <<'EOF'
from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello from Pipenv!"
EOF
    (cd "$WORK/pipfile" && PIPENV_VENV_IN_PROJECT=1 "$TOOLS/bin/pipenv" install --python 3.11 \
        flask gunicorn >/dev/null 2>&1)
    keep pipfile
}

# FastAPI, Flask, FastHTML, static, PHP, shell and Go have no generator: they are written
# from each framework's first-app docs and kept as committed.

ALL=(vite_react_ts vite_vue vite_svelte vite_vanilla next_default next_standalone next_export
    sveltekit_node sveltekit_static angular nest express bun nuxt astro react_router
    django uv_app uv_package poetry_app pdm_app pipfile)

main() {
    local names=("$@") name
    [ ${#names[@]} -eq 0 ] && names=("${ALL[@]}")
    for name in "${names[@]}"; do
        name=${name//-/_}
        declare -F "app_$name" >/dev/null || {
            say "no generator for $name (choices: ${ALL[*]})"
            exit 2
        }
        say "$name: generating in $WORK"
        rm -rf "${WORK:?}/${name//_/-}"
        "app_$name"
    done
}
main "$@"
