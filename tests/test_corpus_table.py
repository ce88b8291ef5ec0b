"""The corpus table in docs/building.md: `scripts/corpus --only` rewrites the rows of the apps
it ran and keeps every other row as recorded (bench/corpus.py; no build here)."""

from __future__ import annotations

from pathlib import Path

from bench.corpus import (
    DOCS,
    TABLE_END,
    TABLE_START,
    App,
    Check,
    HttpCheck,
    Outcome,
    load_apps,
    merged_section,
    read_section,
    row,
    write_docs,
)

ENV: dict[str, object] = {
    "cpus": 2,
    "docker_engine": "20.10",
    "postgresql": "15",
    "load_average": 3.5,
}
CHECK = Check(family=5, proves="it answers", http=(HttpCheck(path="/", expect=("hi",)),))


def app(name: str) -> App:
    return App(name, Path("/nowhere") / name, CHECK)


def recorded_page() -> str:
    return "\n".join(
        [
            "# Building",
            "",
            TABLE_START,
            "Run 2026-12-02 19:46 UTC on Linux, 2 CPUs; `--jobs 1`, 6 min in all.",
            "Rows of alpha, gamma re-run 2026-12-02 21:00 UTC on Linux; `--jobs 1`, 1 min in all.",
            "",
            "| app | family | runtime | result | cold build (s) | warm rebuild (s) "
            "| install cached | image (MB) |",
            "|---|---:|---|---|---:|---:|---|---:|",
            "| alpha | 5 | node 22 | pass | 36.9 | 20.2 | yes | 624 |",
            "| beta | 3 | bun 1 | fail: build: no start | 2.3 | – | – | – |",
            "| gamma | 0 | go 1.27 | pass | 1.5 | 1.0 | yes | 80 |",
            "| gone | 0 | go 1.27 | pass | 1.5 | 1.0 | yes | 80 |",
            "",
            "3 of 4 apps pass.",
            TABLE_END,
            "",
            "After the table.",
            "",
        ]
    )


def test_the_docs_table_has_one_row_per_app_and_its_count() -> None:
    recorded = read_section(DOCS.read_text(encoding="utf-8"))
    assert recorded is not None
    assert set(recorded.rows) == {item.name for item in load_apps()}
    assert recorded.runs and recorded.runs[0].startswith("Run ")


def test_only_the_rows_of_the_apps_run_are_rewritten(tmp_path: Path) -> None:
    page = tmp_path / "building.md"
    page.write_text(recorded_page(), encoding="utf-8")
    before = read_section(page.read_text(encoding="utf-8"))
    assert before is not None
    fresh = Outcome("alpha", 5, "node 22", True, "ok", 20.0, 8.0, True, 323.4)
    text = merged_section(
        before, ENV, [fresh], [app("alpha"), app("beta"), app("gamma"), app("new")], 1, 120.0
    )
    write_docs(text, page)
    written = page.read_text(encoding="utf-8")
    after = read_section(written)
    assert after is not None
    assert (
        after.rows["alpha"]
        == row(fresh)
        == ("| alpha | 5 | node 22 | pass | 20.0 | 8.0 | yes | 323 |")
    )
    assert after.rows["beta"] == before.rows["beta"]
    assert after.rows["gamma"] == before.rows["gamma"]
    assert "gone" not in after.rows  # no longer under tests/apps
    assert after.rows["new"] == "| new | 5 | – | not run | – | – | – | – |"
    assert list(after.rows) == ["alpha", "beta", "gamma", "new"]
    assert "\n2 of 4 apps pass.\n" in written
    # The whole run's line stays; the earlier re-run line names only what it still wrote.
    assert after.runs[0] == before.runs[0]
    assert after.runs[1].startswith("Rows of gamma re-run 2026-12-02 21:00 UTC")
    assert after.runs[2].startswith("Rows of alpha re-run ")
    assert "`--jobs 1`, 2 min in all." in after.runs[2]
    assert ", load average 3.5 at the start;" in after.runs[2]
    assert written.startswith("# Building\n\n") and written.endswith("\nAfter the table.\n")


def test_a_rerun_line_whose_rows_were_all_rewritten_goes() -> None:
    before = read_section(recorded_page())
    outcomes = [Outcome("alpha", 5), Outcome("gamma", 0)]
    text = merged_section(before, ENV, outcomes, [app("alpha"), app("gamma")], 1, 60.0)
    after = read_section(text)
    assert after is not None
    assert len(after.runs) == 2
    assert after.runs[1].startswith("Rows of alpha, gamma re-run ")
    assert after.rows["alpha"].startswith("| alpha | 5 | – | fail")
    assert "0 of 2 apps pass." in text


def test_a_page_without_a_table_gets_one() -> None:
    assert read_section("# Building\n") is None
    text = merged_section(None, ENV, [Outcome("alpha", 5, passed=True)], [app("alpha")], 1, 1.0)
    assert text.startswith(TABLE_START) and text.endswith(TABLE_END)
    assert "1 of 1 apps pass." in text
