"""Railpack's plan for people (`click-deploy plan`): its steps and the commands they run,
then what the image starts, as Railpack's own `prepare` output lists them."""

from __future__ import annotations

from pipeline.railpack.cli import Prepared
from pipeline.railpack.plan import ExecCommand, Layer


def _source(layer: Layer) -> str | None:
    if layer.step:
        return layer.step
    if layer.image:
        return layer.image
    return "the app's files" if layer.local else None


def summary_lines(prepared: Prepared) -> list[str]:
    """One block per step (its inputs, the commands it runs), then the deploy image."""
    plan, info = prepared.plan, prepared.info
    lines = [f"railpack plan ({', '.join(info.detected_providers) or 'no provider'}):"]
    for step in plan.steps:
        inputs = [source for source in map(_source, step.inputs) if source]
        lines.append(f"  step {step.name}" + (f" (from {', '.join(inputs)})" if inputs else ""))
        lines += [
            f"    $ {command.cmd}" for command in step.commands if isinstance(command, ExecCommand)
        ]
        if step.caches:
            lines.append(f"    caches: {', '.join(step.caches)}")
    base = _source(plan.deploy.base) or "scratch"
    copied = list(dict.fromkeys(s for s in map(_source, plan.deploy.inputs) if s))
    lines.append(f"  deploy on {base}" + (f", with files of {', '.join(copied)}" if copied else ""))
    if plan.deploy.start_command:
        lines.append(f"    $ {plan.deploy.start_command}")
    if plan.deploy.variables:
        lines.append(f"    variables: {', '.join(sorted(plan.deploy.variables))}")
    return lines
