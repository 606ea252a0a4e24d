"""The accuracy suite's pairs file comes from --pairs or FACEPIPE_PAIRS, never from a checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli.bench import bench_main, pairs_file


def test_pairs_come_from_the_option_then_the_environment(tmp_path: Path) -> None:
    given, named = tmp_path / "given.csv", tmp_path / "named.csv"
    given.write_text("path_a,path_b,same\n")
    named.write_text("path_a,path_b,same\n")
    assert pairs_file(given, {"FACEPIPE_PAIRS": str(named)}) == (given, "")
    assert pairs_file(None, {"FACEPIPE_PAIRS": str(named)}) == (named, "")
    assert pairs_file(None, {}) == (None, "")
    assert pairs_file(None, {"FACEPIPE_PAIRS": ""}) == (None, "")
    missing = tmp_path / "missing.csv"
    assert pairs_file(None, {"FACEPIPE_PAIRS": str(missing)}) == (
        missing,
        f"FACEPIPE_PAIRS={missing}: no such file",
    )


def test_the_accuracy_suite_without_pairs_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FACEPIPE_PAIRS", raising=False)
    assert bench_main(["--suite", "accuracy", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == (
        "facepipe bench: error: the accuracy suite needs a labeled pairs CSV: "
        "--pairs PATH or FACEPIPE_PAIRS=PATH\n"
    )
    monkeypatch.setenv("FACEPIPE_PAIRS", str(tmp_path / "none.csv"))
    assert bench_main(["--suite", "accuracy"]) == 2
    error = capsys.readouterr().err
    assert "FACEPIPE_PAIRS=" in error and "no such file" in error
    assert not (tmp_path / "out").exists()  # refused before anything ran or was written
