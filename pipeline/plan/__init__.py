"""The planner: how to build a service, as data.

    result = plan_app(checkout, BuildConfig(root_dir="web"), BaseImages.from_settings(s))
    if result.ok:
        build(result.plan)          # Dockerfile text, context dir, build args, ...
    else:
        report(result.message)      # for a person: what is missing and what to do

Pure and synchronous: it reads files under the checkout and nothing else.
"""

from pipeline.plan.app import App, InvalidFile
from pipeline.plan.config import (
    REPO_CONFIG_FILE,
    BuildConfig,
    RepoConfig,
    merge_configs,
    parse_build_config,
    parse_repo_config,
)
from pipeline.plan.context import Layout, PlanContext, RuntimeStage, Step
from pipeline.plan.format import format_plan
from pipeline.plan.images import BaseImages
from pipeline.plan.model import BuildPlan, Message, PlanResult
from pipeline.plan.planner import plan_app
from pipeline.plan.providers import PROVIDERS, Provider

__all__ = [
    "PROVIDERS",
    "REPO_CONFIG_FILE",
    "App",
    "BaseImages",
    "BuildConfig",
    "BuildPlan",
    "InvalidFile",
    "Layout",
    "Message",
    "PlanContext",
    "PlanResult",
    "Provider",
    "RepoConfig",
    "RuntimeStage",
    "Step",
    "format_plan",
    "merge_configs",
    "parse_build_config",
    "parse_repo_config",
    "plan_app",
]
