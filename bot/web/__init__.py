"""Server-rendered pages: a deployment's live log, a service's recent deployments."""
