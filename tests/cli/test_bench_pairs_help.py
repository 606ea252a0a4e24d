"""`facepipe bench --pairs`: what its help says happens without a pairs file is what happens (a
run of every suite skips the accuracy suite; --suite accuracy alone is a usage error)."""

from __future__ import annotations

import pytest

from pipeline.cli.bench import PAIRS_VARIABLE, bench_main, build_parser
from pipeline.cli.exit_status import ExitStatus


def test_the_pairs_help_says_an_explicit_accuracy_suite_needs_a_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(PAIRS_VARIABLE, raising=False)
    pairs_help = next(a.help for a in build_parser()._actions if "--pairs" in a.option_strings)
    assert pairs_help is not None and "--suite accuracy is a usage error" in pairs_help
    assert bench_main(["--suite", "accuracy"]) == ExitStatus.USAGE_ERROR
    assert "needs a labeled pairs CSV" in capsys.readouterr().err
