"""Answers 200 only when what the system-packages table installed is there at run time:
libpq for psycopg 3, poppler's pdftoppm for pdf2image, libcairo for the compiled pycairo,
and no compiler (it stays in the build stage)."""

import shutil
import subprocess

import cairo
import psycopg
from flask import Flask

app = Flask(__name__)


@app.get("/")
def index() -> tuple[str, int]:
    poppler = subprocess.run(["pdftoppm", "-v"], capture_output=True, text=True).stderr.split("\n")[
        0
    ]
    checks = {
        "libpq": str(psycopg.pq.version()),
        "poppler": poppler,
        "cairo": cairo.cairo_version_string(),
        "gcc": "absent" if shutil.which("gcc") is None else "present",
    }
    ok = checks["gcc"] == "absent" and "pdftoppm" in poppler
    body = "python-system-packages " + " ".join(f"{k}={v}" for k, v in checks.items())
    return body + "\n", 200 if ok else 500
