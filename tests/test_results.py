"""Results files with provenance (diffusion_lib/course/results.py, experiments/, `python -m diffusion_lib results`).

What they check: a saved result loads back equal, with the command, the commit of this checkout, the
machine, a date, the seconds and the library version; the notebook's label names the command and
says the numbers were loaded, not computed live; a file that is not a results file is refused with its
name; the command line runs a registered experiment and refuses an unknown one naming the known
ones. Deterministic: designed false-failure rate 0.
"""
import json
import subprocess

import pytest

from diffusion_lib.cli import main
from diffusion_lib.course import experiments, results


def test_a_result_round_trips_with_its_provenance(tmp_path):
    data = {"steps": [10, 20], "fd": [29.5, 20.25], "label": "DDIM eta = 0"}
    path = results.save_results(tmp_path / "r.json", "demo", data, seconds=12.34, command="python demo.py")
    loaded, provenance = results.load_results(path)
    assert loaded == data
    assert provenance["command"] == "python demo.py" and provenance["seconds"] == 12.3
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                          cwd=results.Path(results.__file__).parents[2]).stdout.strip()
    assert provenance["commit"].startswith(head) and head
    assert "cores" in provenance["machine"] and "torch" in provenance["machine"]
    assert provenance["date"][:2] == "20" and provenance["library_version"]
    label = results.describe(provenance)
    assert label.startswith("Loaded, not live") and "python demo.py" in label and "RECOMPUTE" in label


def test_a_foreign_file_is_refused_by_name(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"fd": 1}))
    with pytest.raises(ValueError, match="x.json is not a diffusion_lib results file"):
        results.load_results(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{broken")
    with pytest.raises(ValueError, match="y.json cannot be read"):
        results.load_results(tmp_path / "y.json")


def test_the_command_line_runs_a_registered_experiment(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(experiments.EXPERIMENTS, "square", lambda seed, fast: {"seed": seed, "value": seed ** 2})
    out = tmp_path / "square.json"
    assert main(["results", "square", "--seed", "3", "--out", str(out)]) == 0
    data, provenance = results.load_results(out)
    assert data == {"seed": 3, "value": 9}
    assert provenance["command"] == f"python -m diffusion_lib results square --seed 3 --out {out}"
    assert main(["results", "nothing", "--out", str(tmp_path / "n.json")]) == 1
    assert "unknown experiment 'nothing'; known: " in capsys.readouterr().err
