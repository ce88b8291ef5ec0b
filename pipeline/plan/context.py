"""What providers write into: a build layout (data), evidence and messages.

A provider never writes Dockerfile text. It describes the build as a `Layout`: the image,
the files to copy before installing, the install/build commands with their cache mounts,
an optional runtime stage, and the start command. The planner applies the overrides
(service config, `click-deploy.toml`, Procfile) to the layout, then one renderer turns it
into a Dockerfile, so every runtime gets the same conventions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.plan.app import App
from pipeline.plan.config import BuildConfig
from pipeline.plan.images import BaseImages, ImageKind
from pipeline.plan.model import Level, Message


@dataclass
class Step:
    """One RUN: a shell command and the directories BuildKit keeps between builds."""

    command: str
    caches: tuple[str, ...] = ()


@dataclass
class RuntimeStage:
    """A second, smaller stage that only receives files from the build stage."""

    image: str
    copies: list[tuple[str, str]]  # (path in the build stage, path here)
    workdir: str = "/app"
    run: list[str] = field(default_factory=list)  # shell commands run as root, after copies
    apt: bool = True  # a Debian image: extra apt packages can be installed here
    apt_packages: list[str] = field(default_factory=list)  # what the app loads at run time


@dataclass
class Layout:
    image: str
    stage: str = "app"  # the build stage's name ("build" or "composer" before a runtime)
    workdir: str = "/app"
    env: dict[str, str] = field(default_factory=dict)  # before anything else
    setup: list[Step] = field(default_factory=list)  # tools, before copying manifests
    manifests: list[str] = field(default_factory=list)  # copied before install
    copy_source_first: bool = False  # install needs the whole source
    install: Step | None = None
    after_source: list[Step] = field(default_factory=list)  # after COPY . ., before build
    build_env: dict[str, str] = field(default_factory=dict)
    build: Step | None = None
    after_build: list[Step] = field(default_factory=list)  # e.g. removing dev dependencies
    runtime: RuntimeStage | None = None
    runtime_env: dict[str, str] = field(default_factory=dict)
    start: str | None = None
    writable: list[str] = field(default_factory=list)  # dirs the app user may write
    apt_packages: list[str] = field(default_factory=list)  # in the build stage
    apt: bool = True  # the build stage is a Debian image
    worker: bool = False  # no port, no HTTP check: a bot, a queue consumer, a script


class PlanContext:
    """The planner's scratchpad for one app."""

    def __init__(
        self,
        app: App,
        config: BuildConfig,
        images: BaseImages,
        *,
        start_override: str | None = None,
        location: str = ".",
    ) -> None:
        self.app = app
        self.config = config
        self.images = images
        self.start_override = start_override  # config or Procfile: the app has a server
        self.location = location  # the app directory, relative to the repo, for messages
        self.runtime: str | None = None
        self.version: str | None = None
        self.layout: Layout | None = None
        self.evidence: list[str] = []
        self.messages: list[Message] = []
        self.failure: str | None = None
        self.worker_override: bool | None = None  # config or Procfile decided web/worker

    def image(self, kind: ImageKind, version: str | None = None) -> str:
        return self.images.image(kind, version)

    def decided(self, source: str, what: str) -> None:
        """Record that `source` (a file) decided `what`."""
        line = f"{source}: {what}"
        if line not in self.evidence:
            self.evidence.append(line)

    def say(self, level: Level, text: str) -> None:
        message = Message(level, text)
        if message not in self.messages:
            self.messages.append(message)

    def info(self, text: str) -> None:
        self.say("info", text)

    def warning(self, text: str) -> None:
        self.say("warning", text)

    def suggestion(self, text: str) -> None:
        self.say("suggestion", text)

    def fail(self, message: str) -> None:
        """The app cannot be planned; `message` tells a person why and what to do."""
        if self.failure is None:
            self.failure = message

    @property
    def failed(self) -> bool:
        return self.failure is not None
