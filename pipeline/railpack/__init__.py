"""Railpack as a builder: `railpack prepare` plans the app, click-deploy builds the plan.

Railpack's own `railpack build` hands its plan to BuildKit's gateway frontend
(`ghcr.io/railwayapp/railpack:railpack-frontend`). That frontend is an image pulled from
ghcr.io at build time, which a mirror-only or offline builder cannot do, and a Docker
engine's embedded BuildKit needs a client session for it. So the plan is translated here
into a multi-stage Dockerfile with the same graph (one stage per step, the same inputs,
caches, variables and deploy image config) and built through the configured transport
like any other build: progress, logs, secrets and cache mounts as usual.
"""

from pipeline.railpack.choose import choose_plan
from pipeline.railpack.dockerfile import render_plan
from pipeline.railpack.plan import RailpackInfo, RailpackPlan, parse_info, parse_plan

__all__ = [
    "RailpackInfo",
    "RailpackPlan",
    "choose_plan",
    "parse_info",
    "parse_plan",
    "render_plan",
]
