"""Error types. The type says who must act: the user (a message), or nobody (a retry)."""

from __future__ import annotations


class ClickDeployError(Exception):
    """An error with a message meant for a person; shown as is, never as a traceback."""


class ConfigError(ClickDeployError):
    """The configuration (environment, .env) is missing or invalid."""


class NotFound(ClickDeployError):
    """A service or deployment that does not exist."""


class Conflict(ClickDeployError):
    """The request clashes with what is stored (a duplicate name, say)."""


class InvalidTransition(ClickDeployError):
    """A deployment state change the state machine does not allow."""


class DeploymentFailure(ClickDeployError):
    """A deployment step failed for good: a bad Dockerfile, a failing build. Not retried."""


class TransientError(ClickDeployError):
    """A fault that may go away by itself (registry down, engine restarting). Retried
    with exponential backoff up to RETRY_MAX_ATTEMPTS."""


class InvalidValue(ClickDeployError, ValueError):
    """A value a person gave is not one click-deploy accepts (a service name, a ref, a
    folder, a config key). The message names the value and what is allowed. A ValueError
    too, so pydantic validators can raise it."""
