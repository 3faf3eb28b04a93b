"""The experiments of notebook 06 (diffusion_lib/course/experiments/) and the results files the course ships for them.

What they check, against the library and exact identities:
- sigma_hat_sample (the DDIM paper's sigma_hat rows) is ddpm_sample(variance="beta") draw for draw at S = T, and on a
  jump adds the jump's forward variance 1 - alpha_bar_t / alpha_bar_s and nothing on the last step;
- every row of a sampler table starts from the same codes x_T: each row is the library's sampler run from x_T with
  the row's noise seed (DDIM at eta = 0 ignores it), and the clipping rows are ddim_step(clip_x0=True) and
  EpsFromClippedX0, which is DDPM's reference step mu_tilde(x_t, clip(x0_hat)) under ddpm_step;
- the summaries (means, spreads, paired differences) on a table whose answers are known;
- the smoke runs of both experiments give plain JSON with the promised fields, and the command line saves them;
- the shipped files (assets/results/06_table1.json, 06_clipping.json) hold the full grid the notebook reads, from the
  registered experiments, with the provenance that `describe` prints, and n = 2 x the notebook's live n, so the
  loaded standard errors apply to the live table.
Deterministic (seeded, exact comparisons): designed false-failure rate 0. Runtime: about 25 s on 2 cores.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from diffusion_lib import (ddim_sample, ddim_step, ddpm_sample, ddpm_step, gaussian, linear_schedule,
                           posterior_mean_var, predict_x0)
from diffusion_lib.cli import main
from diffusion_lib.course import experiments, results
from diffusion_lib.course.experiments import EpsFromClippedX0, Sampler

REPO = Path(__file__).resolve().parent.parent
SCHEDULE = linear_schedule()
F64 = torch.float64


def toy_model():
    """The exact eps* of 2-D Gaussian data (data/toy.py): a model with a known answer, float64."""
    return gaussian([0.5, -0.3], [0.4, 0.1]).eps_model(SCHEDULE)


def codes(n=64, seed=1, dtype=F64):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_sigma_hat_at_all_steps_is_ddpm_with_beta():
    x_T = codes()
    ours = experiments.sigma_hat_sample(toy_model(), SCHEDULE, SCHEDULE.T, x_T, torch.Generator().manual_seed(2))
    ddpm = ddpm_sample(toy_model(), None, SCHEDULE, x_T=x_T, variance="beta", generator=torch.Generator().manual_seed(2))
    assert float((ours - ddpm).abs().max()) < 1e-12


def test_sigma_hat_jump_adds_the_jump_forward_variance_and_nothing_at_the_end():
    """Two steps, T -> 500 -> 0, with a model that returns a fixed eps: the result is known in closed form."""
    x_T, eps = codes(), codes(seed=3)
    model = lambda x, t: eps                                      # noqa: E731 - a constant eps_theta
    ours = experiments.sigma_hat_sample(model, SCHEDULE, 2, x_T, torch.Generator().manual_seed(4))
    z = torch.randn(x_T.shape, generator=torch.Generator().manual_seed(4), dtype=F64)      # the first draw
    ab = SCHEDULE.alpha_bars
    x_500 = (ddim_step(x_T, 1000, 500, eps, SCHEDULE, eta=1.0, noise=torch.zeros_like(x_T))
             + (1 - ab[1000] / ab[500]).sqrt() * z)
    assert float((ours - ddim_step(x_500, 500, 0, eps, SCHEDULE)).abs().max()) < 1e-12


def test_every_row_starts_from_the_same_codes():
    x_T, model = codes(), toy_model()
    for row, expected in [
        (Sampler("ddim", 10, 0.0), ddim_sample(model, None, SCHEDULE, steps=10, x_T=x_T)),
        (Sampler("ddim", 20, 1.0), ddim_sample(model, None, SCHEDULE, steps=20, eta=1.0, x_T=x_T,
                                               generator=torch.Generator().manual_seed(7))),
        (Sampler("ddpm", SCHEDULE.T, 1.0), ddpm_sample(model, None, SCHEDULE, x_T=x_T,
                                                       generator=torch.Generator().manual_seed(7))),
    ]:
        got = experiments.draw(model, SCHEDULE, row, x_T, noise_seed=7)
        assert got.dtype == torch.float32 and got.device.type == "cpu"
        assert torch.equal(got, expected.clamp(-1, 1).float()), row.label
    a, b = (experiments.draw(model, SCHEDULE, Sampler("ddim", 10, 0.0), x_T, noise_seed=s) for s in (0, 1))
    assert torch.equal(a, b), "eta = 0 must not depend on the noise seed"
    eta1, ddpm = (experiments.draw(model, SCHEDULE, row, x_T, noise_seed=5)
                  for row in (Sampler("ddim", SCHEDULE.T, 1.0), Sampler("ddpm", SCHEDULE.T, 1.0)))
    assert float((eta1 - ddpm).abs().max()) < 1e-6, "DDIM at eta = 1 on all T steps is DDPM, draw for draw"


def test_clipping_rows():
    x_T = 3 * codes()                                  # wide codes: x0_hat leaves [-1, 1] often
    model = toy_model()
    keep = experiments.draw(model, SCHEDULE, Sampler("ddim", 20, 0.0, "keep_eps"), x_T)
    assert torch.equal(keep, ddim_sample(model, None, SCHEDULE, steps=20, x_T=x_T, clip_x0=True).clamp(-1, 1).float())
    rederive = experiments.draw(model, SCHEDULE, Sampler("ddim", 20, 0.0, "rederive_eps"), x_T)
    assert torch.equal(rederive, ddim_sample(EpsFromClippedX0(model, SCHEDULE), None, SCHEDULE, steps=20,
                                             x_T=x_T).clamp(-1, 1).float())


@pytest.mark.parametrize("t", [1000, 500, 20, 2])
def test_eps_from_clipped_x0_is_ddpms_reference_step(t):
    g = torch.Generator().manual_seed(t)
    xt, eps, z = (2 * torch.randn(8, 1, 4, 4, generator=g, dtype=F64) for _ in range(3))
    wrapped = EpsFromClippedX0(lambda x, t_: eps, SCHEDULE)
    eps_c = wrapped(xt, t)
    x0_c = predict_x0(xt, t, eps, SCHEDULE).clamp(-1, 1)
    assert float((predict_x0(xt, t, eps_c, SCHEDULE) - x0_c).abs().max()) < 1e-9      # the pair decomposes x_t
    mean, var = posterior_mean_var(x0_c, xt, t, SCHEDULE)                               # DDPM's p_sample, clipped
    assert float((ddpm_step(xt, t, eps_c, SCHEDULE, z, "beta_tilde") - (mean + var.sqrt() * z)).abs().max()) < 1e-9
    inside = 0.5 * torch.tanh(xt)                                                       # x0_hat inside [-1, 1]
    eps_in = (xt - SCHEDULE.alpha_bars[t].sqrt() * inside) / (1 - SCHEDULE.alpha_bars[t]).sqrt()
    assert float((EpsFromClippedX0(lambda x, t_: eps_in, SCHEDULE)(xt, t) - eps_in).abs().max()) < 1e-9


def test_rows_are_checked_and_labelled():
    assert [r.label for r in experiments.live_rows((10, 20))] == ["eta = 0, S = 10", "eta = 0, S = 20", "eta = 1, S = 10",
                                                                  "eta = 1, S = 20", "DDPM, all 1000 steps"]
    with pytest.raises(ValueError, match="kind must be"):
        Sampler("euler", 10)
    with pytest.raises(ValueError, match="DDIM only"):
        Sampler("ddpm", 1000, 1.0, "keep_eps")
    rows = experiments.table1_rows()
    labels = [r.label for r in rows]
    assert len(labels) == len(set(labels)) == 20
    assert "DDPM, all 1000 steps" in labels and "eta = 1, S = 1000" not in labels and "sigma_hat, S = 10" in labels


def fake_table(fds, halves):
    """A table1 result with known numbers: fds[label] = [FD per seed], halves[label] = [[FD of each half] per seed]."""
    rows = [{"label": k, "kind": "ddim", "steps": 10, "eta": float(j), "calls": 10, "n": 100, "seed": s, "fd": fd,
             "fd_halves": halves[k][i], "seconds": 2.0 + s, "floor": 5.0, "floor_sd": 1.0}
            for j, k in enumerate(fds) for i, (s, fd) in enumerate(zip((0, 1, 2), fds[k]))]
    return {"seeds": [0, 1, 2], "n": 100, "rows": rows}


def test_summary_and_paired_differences():
    data = fake_table({"a": [10.0, 12.0, 14.0], "b": [9.0, 10.0, 11.0]},
                      {"a": [[20.0, 22.0], [24.0, 26.0], [28.0, 30.0]], "b": [[19.0, 21.0], [22.0, 24.0], [25.0, 27.0]]})
    s = experiments.table1_summary(data)["a"]
    assert s["fd"] == 12.0 and s["sd"] == 2.0 and s["seeds"] == 3 and s["halves"] == 6 and s["seconds"] == 3.0
    assert s["fd_half"] == 25.0 and math.isclose(s["sd_half"], math.sqrt(14.0))
    mean, sd, k = experiments.paired_difference(data, "a", "b", halves=False)
    assert (mean, sd, k) == (2.0, 1.0, 3)
    mean, sd, k = experiments.paired_difference(data, "a", "b")
    assert k == 6 and math.isclose(mean, 2.0) and math.isclose(sd, math.sqrt(0.8))
    text = experiments.grid_text(experiments.table1_summary(data))
    assert [line.split() for line in text.splitlines()] == [["S", "=", "10"], ["eta", "=", "0", "12.0", "+-", "2.0"],
                                                            ["eta", "=", "1", "10.0", "+-", "1.0"]], text


def test_the_smoke_runs_give_plain_json(tmp_path):
    data = experiments.table1(fast=True)
    json.dumps(data)
    expected = {r.label for r in experiments.table1_rows((2, 5), (0.0, 1.0))}
    assert len(data["seeds"]) == 2
    for seed in data["seeds"]:
        assert {r["label"] for r in data["rows"] if r["seed"] == seed} == expected
    assert experiments.paired_difference(data, "eta = 1, S = 5", "eta = 0, S = 5", halves=False)[2] == 2
    for r in data["rows"]:
        assert len(r["fd_halves"]) == 2 and r["seconds"] > 0 and math.isfinite(r["fd"]) and r["n"] == data["n"]
    assert main(["results", "clipping", "--fast", "--out", str(tmp_path / "c.json")]) == 0
    clip, provenance = results.load_results(tmp_path / "c.json")
    assert provenance["name"] == "clipping" and [r["steps"] for r in clip["records"]] == [2, 5]
    for r in clip["records"]:
        assert set(r["fd"]) == set(r["rmse"]) == set(r["black"]) == {"none", "keep_eps", "rederive_eps"}
        assert r["rmse"]["none"] == 0.0


def test_the_shipped_table1_holds_the_grid_the_notebook_reads():
    data, provenance = results.load_results(REPO / "assets" / "results" / "06_table1.json")
    assert provenance["name"] == "table1" and provenance["command"].startswith("python -m diffusion_lib results table1")
    assert provenance["seconds"] > 0 and "cores" in provenance["machine"]
    assert data["model"] == "assets/digits.pt" and data["n"] == 1000 and len(data["seeds"]) >= 10
    grid, live = {r.label for r in experiments.table1_rows()}, {r.label for r in experiments.live_rows()}
    assert data["full_seeds"] >= 3 and live <= set(data["extra_rows"]) <= grid
    for k, seed in enumerate(data["seeds"]):
        assert {r["label"] for r in data["rows"] if r["seed"] == seed} == (grid if k < data["full_seeds"]
                                                                            else set(data["extra_rows"]))
    assert all(math.isfinite(r["fd"]) and r["fd"] > 0 and len(r["fd_halves"]) == 2 for r in data["rows"])
    notebook = (REPO / "notebooks" / "06_ddim.ipynb").read_text()
    live_n = int(re.search(r"N_LIVE = \d+ if FAST else (\d+)", notebook).group(1))
    assert 2 * live_n == data["n"], "the loaded standard errors are those of an FD from n / 2 codes: the live n"
    assert "06_table1.json" in notebook and "RECOMPUTE = False" in notebook


def test_the_shipped_clipping_study():
    data, provenance = results.load_results(REPO / "assets" / "results" / "06_clipping.json")
    assert provenance["name"] == "clipping" and data["n"] == 1000
    assert [r["steps"] for r in data["records"]] == [10, 20, 50, 100, 200, 1000]
    for r in data["records"]:
        assert set(r["fd"]) == {"none", "keep_eps", "rederive_eps"} and r["rmse"]["none"] == 0.0
