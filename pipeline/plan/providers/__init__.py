"""The providers, in detection order: the first whose `detect` matches plans the build.

PHP, Go and Ruby come before Python and Node because their apps often carry a
package.json for assets; static comes after them, since any app may ship an index.html;
shell (a lone start.sh) last, since every other kind of app may carry one.
"""

from __future__ import annotations

from pipeline.plan.providers.base import Provider
from pipeline.plan.providers.go import GoProvider
from pipeline.plan.providers.node import NodeProvider
from pipeline.plan.providers.php import PhpProvider
from pipeline.plan.providers.python import PythonProvider
from pipeline.plan.providers.ruby import RubyProvider
from pipeline.plan.providers.shell import ShellProvider
from pipeline.plan.providers.static import StaticProvider

PROVIDERS: tuple[Provider, ...] = (
    PhpProvider(),
    GoProvider(),
    RubyProvider(),
    PythonProvider(),
    NodeProvider(),
    StaticProvider(),
    ShellProvider(),
)


def provider_named(name: str) -> Provider:
    for provider in PROVIDERS:
        if provider.name == name:
            return provider
    raise KeyError(name)


__all__ = ["PROVIDERS", "Provider", "provider_named"]
