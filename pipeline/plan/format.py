"""A plan for people: what was decided and why, then the Dockerfile."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.plan.model import PlanResult


def format_plan(
    result: PlanResult, *, builder: str | None = None, details: Sequence[str] = ()
) -> str:
    """RESULT for people. `builder`: who planned it and why (a line of its own, first);
    `details`: the builder's own account of its plan, before the Dockerfile."""
    head = [f"builder:    {builder}"] if builder else []
    if not result.ok or result.plan is None:
        return "\n".join([*head, f"cannot plan: {result.message or 'unknown reason'}"]) + "\n"
    plan = result.plan
    lines = list(head)
    runtime = plan.runtime + (f" {plan.version}" if plan.version else "")
    lines.append(f"runtime:    {runtime}")
    lines.append(f"context:    {plan.context_dir}")
    if plan.dockerfile_path:
        lines.append(f"dockerfile: {plan.dockerfile_path} (the repo's own)")
    else:
        lines.append("dockerfile: generated")
    if plan.target:
        lines.append(f"target:     {plan.target}")
    if plan.kind == "worker":
        lines.append("kind:       worker (no port, no HTTP check)")
    if plan.build_args:
        lines.append(f"build args: {', '.join(sorted(plan.build_args))}")
    if plan.secrets:
        lines.append(f"secrets:    {', '.join(sorted(plan.secrets))}")
    for label, command in (("install", plan.install), ("build", plan.build), ("start", plan.start)):
        if command:
            lines.append(f"{label + ':':<11} {command}")
    if plan.evidence:
        lines.append("")
        lines.append("evidence:")
        lines += [f"  - {item}" for item in plan.evidence]
    if plan.messages:
        lines.append("")
        lines.append("messages:")
        lines += [f"  {message.level}: {message.text}" for message in plan.messages]
    if details:
        lines.append("")
        lines += details
    lines.append("")
    lines.append("--- Dockerfile " + "-" * 50)
    lines.append(plan.dockerfile.rstrip("\n"))
    if plan.dockerignore is not None:
        lines.append("--- .dockerignore (the repo has none) " + "-" * 27)
        lines.append(plan.dockerignore.rstrip("\n"))
    return "\n".join(lines) + "\n"
