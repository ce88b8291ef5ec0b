"""Operating click-deploy: health and readiness probes, Prometheus metrics, log redaction.

Each module is one concern; `bot.serve.FEATURES` wires the HTTP parts in, `bot.logs` the
redacting processor."""
