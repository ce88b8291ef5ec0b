"""The keys under which `serve` keeps the process's runtime and worker on its aiohttp app, in
a module of their own so that the parts `serve` mounts can read them without importing it."""

from aiohttp import web

from bot.runtime import Runtime
from pipeline.queue.worker import Worker

RUNTIME_KEY = web.AppKey("runtime", Runtime)
WORKER_KEY = web.AppKey("worker", Worker)
