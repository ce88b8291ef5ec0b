"""The docs tell the truth about the code in the same commit: every setting is documented,
the generated page is current, links resolve, and the commands they name exist."""

from __future__ import annotations

import re
from pathlib import Path

from bot import docs_config
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = sorted(
    page
    for page in [README, REPO / "bench" / "README.md", *(REPO / "docs").glob("*.md")]
    if page.exists()
)

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
COMMAND = re.compile(r"click-deploy((?: [a-z][a-z-]*)+)")


def test_every_setting_has_a_description_a_person_can_act_on() -> None:
    for name, info in Settings.model_fields.items():
        description = (info.description or "").strip()
        assert len(description) > 10, f"{name.upper()} needs a Field(description=...)"
        assert description.endswith("."), f"{name.upper()}: end the description with a period"


def test_the_configuration_page_is_the_generators_output() -> None:
    page = docs_config.PAGE.read_text(encoding="utf-8")
    assert page == docs_config.render(), (
        "docs/configuration.md is out of date: run `python -m bot.docs_config`"
    )


def test_the_configuration_page_names_every_setting_with_its_default() -> None:
    page = docs_config.PAGE.read_text(encoding="utf-8")
    for name, info in Settings.model_fields.items():
        row = f"| `{name.upper()}` | {docs_config.shown_default(name, info)} |"
        assert row in page, f"{name.upper()} is missing from docs/configuration.md"
    assert "| `DATABASE_URL` | – | **secret**." in page
    assert "| `WORKER_SLOTS` | `2` |" in page


def test_a_setting_without_a_group_still_gets_a_section() -> None:
    assert docs_config.group_of("some_future_setting") is docs_config.OTHER
    assert docs_config.group_of("github_app_id").title == "GitHub"
