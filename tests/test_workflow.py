"""The GitHub Pages workflow (.github/workflows/book.yml), checked offline against the GitHub workflow
schema that check-jsonschema ships (its vendored copy; no network): it validates, a broken copy does
not, and it builds the book with `make book` and publishes _book/. Its first real run on GitHub has
not been seen from here. Deterministic: designed false-failure rate 0.
"""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "book.yml"


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, timeout=120)


def test_the_workflow_validates_against_githubs_schema():
    run = validate(WORKFLOW)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_broken_workflow_is_rejected(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest", 1))
    run = validate(broken)
    assert run.returncode != 0 and "runs-on" in run.stdout + run.stderr


def test_it_builds_the_book_and_publishes_it():
    text = WORKFLOW.read_text()
    assert "run: make book" in text and "path: _book" in text and "actions/deploy-pages" in text
    assert "branches: [main]" in text and "download.pytorch.org/whl/cpu" in text
