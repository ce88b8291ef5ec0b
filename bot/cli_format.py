"""How the CLI shows services, deployments and log lines to people."""

from __future__ import annotations

from datetime import datetime

from tabulate import tabulate

from pipeline.models import Deployment, LogLine, Service
from pipeline.release import Observed


def when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(deployment: Deployment) -> str:
    if deployment.started_at is None:
        return "-"
    end = deployment.finished_at or datetime.now().astimezone()
    seconds = (end - deployment.started_at).total_seconds()
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def services_table(services: list[Service]) -> str:
    if not services:
        return "No services yet. Add one with: click-deploy service add NAME --repo REPO"
    return tabulate(
        [(s.id, s.name, s.provider, s.repository, s.branch, s.root_dir) for s in services],
        headers=["ID", "NAME", "PROVIDER", "REPOSITORY", "BRANCH", "ROOT"],
        tablefmt="plain",
    )


def service_details(service: Service) -> str:
    rows = [
        ("id", service.id),
        ("name", service.name),
        ("provider", service.provider),
        ("repository", service.repository),
        ("branch", service.branch),
        ("root dir", service.root_dir),
        ("created", when(service.created_at)),
        ("updated", when(service.updated_at)),
    ]
    rows += [(f"config.{key}", value) for key, value in sorted(service.config.items())]
    if service.options.problem is not None:
        rows.append(("config is not valid", service.options.problem))
    return tabulate(rows, tablefmt="plain")


def progress(deployment: Deployment) -> str:
    if deployment.step is not None and deployment.steps_total:
        text = f"step {deployment.step} of {deployment.steps_total}"
        if deployment.progress_message:
            text += f": {deployment.progress_message}"
        return text
    return deployment.progress_message or ""


def deployments_table(deployments: list[Deployment]) -> str:
    if not deployments:
        return "No deployments."
    return tabulate(
        [
            (
                d.id,
                d.service_name or d.service_id,
                d.environment,
                d.status,
                (d.commit_sha or d.ref or "-")[:12],
                when(d.created_at),
                duration(d),
            )
            for d in deployments
        ],
        headers=["ID", "SERVICE", "ENV", "STATUS", "COMMIT/REF", "CREATED", "TOOK"],
        tablefmt="plain",
    )


def releases_table(releases: list[Observed]) -> str:
    """What runs per environment (the live release of each), as looked at now."""
    if not releases:
        return "Nothing released (target none, or not deployed yet)."
    return tabulate(
        [
            (
                o.record.environment,
                o.record.target,
                o.record.digest[:19],
                o.record.runs_as,
                o.record.url or "-",
                when(o.record.started_at),
                "healthy" if o.healthy else o.state,
                o.detail,
            )
            for o in releases
        ],
        headers=["ENV", "TARGET", "DIGEST", "RUNS AS", "URL", "SINCE", "STATE", "SEEN"],
        tablefmt="plain",
    )


def deployment_details(deployment: Deployment) -> str:
    rows: list[tuple[str, object]] = [
        ("id", deployment.id),
        ("service", deployment.service_name or deployment.service_id),
        ("environment", deployment.environment),
        ("status", deployment.status),
        ("ref", deployment.ref or "-"),
        ("commit", deployment.commit_sha or "-"),
        ("attempts", f"{deployment.attempts} of {deployment.max_attempts}"),
        ("created", when(deployment.created_at)),
        ("started", when(deployment.started_at)),
        ("finished", when(deployment.finished_at)),
        ("took", duration(deployment)),
    ]
    if progress(deployment):
        rows.append(("progress", progress(deployment)))
    if deployment.image:
        rows.append(("image", deployment.image))
    if deployment.superseded_by:
        rows.append(("superseded by", deployment.superseded_by))
    if deployment.cancel_requested and not deployment.status.is_final:
        rows.append(("cancel", "requested"))
    if deployment.error:
        rows.append(("error", deployment.error))
    return tabulate(rows, tablefmt="plain")


def log_line(line: LogLine) -> str:
    prefix = "! " if line.stream == "stderr" else "» " if line.stream == "system" else ""
    return f"{line.at.astimezone():%H:%M:%S} {prefix}{line.line}"
