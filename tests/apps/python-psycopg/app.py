import psycopg
from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    # psycopg 3 without its binary wheel loads the system libpq at import and call time.
    return f"psycopg {psycopg.__version__} with libpq {psycopg.pq.version()}"
