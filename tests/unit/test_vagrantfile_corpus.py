"""The corpus: real-world-style Vagrantfiles, each with the `vmctl validate --json` output
it must give (tests/vagrantfiles/NAME/expected.json, the project folder written as
$PROJECT so the files are stable).

A case folder may hold `case.json` ({"env": {...}, "argv": [...], "has_plugin": false})
and `boxes/NAME/Vagrantfile`, the installed box's own Vagrantfile.
Regenerate the expected files after a deliberate change with VMCTL_UPDATE_CORPUS=1
(and review the diff).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from vmctl.cli.validate import error_json, project_json
from vmctl.errors import ConfigError
from vmctl.vagrantfile import load_project

CORPUS = Path(__file__).resolve().parent.parent / "vagrantfiles"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "Vagrantfile").is_file())
HOME = "/home/tester"


def box_lookup(case: Path) -> Any:
    def lookup(name: str, constraint: str | None) -> Path | None:
        path = case / "boxes" / name.replace("/", "-VAGRANTSLASH-") / "Vagrantfile"
        return path if path.is_file() else None

    return lookup


def run_case(case: Path) -> dict[str, Any]:
    spec = json.loads((case / "case.json").read_text()) if (case / "case.json").is_file() else {}
    env = {"HOME": HOME, "USER": "tester", **spec.get("env", {})}
    try:
        project = load_project(
            case / "Vagrantfile",
            box_vagrantfile=box_lookup(case),
            env=env,
            argv=tuple(spec.get("argv", ["validate"])),
            has_plugin=spec.get("has_plugin", True),
        )
        document = project_json(project)
    except ConfigError as exc:
        document = error_json(exc)
    return json.loads(json.dumps(document).replace(str(case), "$PROJECT"))


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", CASES)
def test_corpus_case(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CORPUS / name
    monkeypatch.chdir(case)  # Dir.pwd and relative reads, as when vmctl runs in the project
    actual = run_case(case)
    expected_file = case / "expected.json"
    if os.environ.get("VMCTL_UPDATE_CORPUS") == "1":
        expected_file.write_text(json.dumps(actual, indent=2) + "\n")
    assert expected_file.is_file(), f"{expected_file} is missing (run with VMCTL_UPDATE_CORPUS=1)"
    assert actual == json.loads(expected_file.read_text())
