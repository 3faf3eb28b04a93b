"""Metrics: the Frechet distance, its real-vs-real floor, the feature classifier, bits/dim.

False-failure rates (every test is seeded, so a given run is deterministic; the rates say how
often a test would fail for a correct library under another seed):
- frechet_distance: exact closed forms, tolerances of float64 rounding: 0.
- bits/dim against the closed-form expected negative ELBO of Gaussian data: 4 standard errors,
  two-sided, 6.3e-5 per check (2 checks).
- fd_with_floor, real held-out images vs the floor: the mean over 12 random splits of
  z = (fd - floor) / floor_sd within +-1.5; from 550 seeded splits measured while designing
  (z: mean -0.07, sd 0.93, right-skewed, max 4.9), a bootstrap of the 12-split mean puts the
  rate at about 3e-6.  The held images of a draw score exactly the floor: exact, 0.
  Noise / blurred / shuffled images >= 10 x floor, and the floor below 5 % of Tr(S) (the FD of
  a model that always draws the mean image): both hold with a wide margin (measured: README,
  Tests), rate ~0.
- the shipped classifier's held-out accuracy >= 95 % (its measured accuracy: README, Tests),
  determinism: 0.
Module: below 1e-3. The seed sweep (scripts/seed_sweep.py) checks it; measured: README, Tests.
"""
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from diffusion_lib.metrics import classifier
from diffusion_lib.data import ImageSet, load_dataset, load_digits
from diffusion_lib.process.elbo import bits_per_dim, elbo_terms
from diffusion_lib.metrics import (bits_per_dim_of, fd_with_floor, feature_classifier, frechet_distance,
                                   image_features, train_classifier)
from diffusion_lib.process.schedules import linear_schedule
from diffusion_lib.data.toy import gaussian


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small matrices and convolutions: one thread is as fast here, and unharmed by a busy CPU,
    where two busy-waiting BLAS threads on a shared core slow these tests down (measured: README,
    Tests)."""
    from threadpoolctl import threadpool_limits               # installed with scikit-learn

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


# --- frechet_distance -----------------------------------------------------------------------------


def with_moments(n, mean, A, seed):
    """n points whose sample mean is exactly `mean` and sample covariance exactly A A^T."""
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(n, len(mean), generator=g, dtype=torch.float64)
    Z = Z - Z.mean(0)
    L = torch.linalg.cholesky(Z.T @ Z / (n - 1))
    Z = torch.linalg.solve_triangular(L, Z.T, upper=False).T          # sample covariance = I
    return Z @ torch.as_tensor(A, dtype=torch.float64).T + torch.as_tensor(mean, dtype=torch.float64)


def test_fd_of_diagonal_gaussians_is_the_closed_form():
    mu_a, mu_b = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25, 2.0]), np.array([2.0, 1.0, 0.25, 0.5])
    a = with_moments(500, mu_a, np.diag(np.sqrt(var_a)), seed=1)
    b = with_moments(300, mu_b, np.diag(np.sqrt(var_b)), seed=2)
    # FD = ||mu_a - mu_b||^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2 for diagonal covariances
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-10)


def test_fd_of_full_covariances_matches_scipy_sqrtm_and_is_invariant():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    a = with_moments(400, rng.normal(size=6), A, seed=3)
    b = with_moments(400, rng.normal(size=6), B, seed=4)
    S_a, S_b = A @ A.T, B @ B.T                                      # do not commute
    mu_a, mu_b = a.mean(0).numpy(), b.mean(0).numpy()
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(S_a + S_b - 2 * scipy.linalg.sqrtm(S_a @ S_b).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))                      # rotation + shift: FD unchanged
    Q, shift = torch.from_numpy(Q), torch.from_numpy(rng.normal(size=6))
    assert frechet_distance(a @ Q + shift, b @ Q + shift) == pytest.approx(expected, rel=1e-8)


def test_fd_of_a_set_with_itself_is_zero_and_bad_shapes_are_refused():
    x = torch.randn(200, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert abs(frechet_distance(x, x)) <= 1e-10 * float(torch.cov(x.T).trace())
    assert frechet_distance(x[:, :1], x[:, :1] + 3.0) == pytest.approx(9.0, rel=1e-12)   # 1-D
    with pytest.raises(ValueError, match="equal d"):
        frechet_distance(x, x[:, :5])


# --- the feature classifier ---------------------------------------------------------------------

def test_shipped_digits_classifier_loads_weights_only_and_classifies():
    path = classifier.ASSETS / "digits_classifier.pt"
    assert path.is_file(), "assets/digits_classifier.pt is missing; see diffusion_lib/metrics/classifier.py"
    checkpoint = torch.load(path, weights_only=True)
    net = feature_classifier("digits", device="cpu")
    test = load_digits("test")
    with torch.no_grad():
        accuracy = float((net(test.images).argmax(1) == test.labels).double().mean())
    assert accuracy >= 0.95
    assert accuracy == pytest.approx(checkpoint["held_out_accuracy"], abs=1e-12)
    assert image_features(net, test.images[:7]).shape == (7, 64)


def test_training_is_deterministic_and_uncached_classifiers_are_trained_and_cached(tmp_path, monkeypatch):
    train, test = load_digits("train"), load_digits("test")
    small = ImageSet("digits", "train", train.images[:256], train.labels[:256], 17)
    (a, _), (b, _), (c, _) = (train_classifier(small, test, 8, seed, "cpu") for seed in (0, 0, 1))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))

    monkeypatch.setattr(classifier, "ASSETS", tmp_path / "no_assets")
    monkeypatch.setenv("DIFFUSION_LIB_DATA", str(tmp_path / "cache"))
    monkeypatch.setitem(classifier.STEPS, "digits", 24)
    feature_classifier("digits", device="cpu")
    assert (tmp_path / "cache" / "digits" / "classifier.pt").is_file()
    monkeypatch.setattr(classifier, "build_classifier", lambda *a, **k: pytest.fail("trained twice"))
    feature_classifier("digits", device="cpu")                        # read from the cache


# --- fd_with_floor ----------------------------------------------------------------------------------

def test_floor_is_small_and_positive_and_damaged_images_are_far_above(all_digits):
    g = torch.Generator().manual_seed(0)
    x = all_digits.images[torch.randperm(len(all_digits), generator=g)[:1000]]
    noise = torch.rand(1000, 1, 8, 8, generator=g) * 2 - 1
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    order = torch.argsort(torch.rand(1000, 64, generator=g), dim=1)  # each image's pixels shuffled
    shuffled = torch.gather(x.reshape(1000, 64), 1, order).reshape(x.shape)
    feats = image_features(feature_classifier("digits", "cpu"), all_digits.images)
    total_variance = float(torch.cov(feats.T).trace())  # the FD of always drawing the mean image
    for name, images in [("noise", noise), ("blurred", blurred), ("shuffled", shuffled)]:
        r = fd_with_floor(images, all_digits, seed=0)
        assert r["n"] == 1000 and r["n_reference"] == 797
        assert 0 < r["floor"] < 0.05 * total_variance, r
        assert r["fd"] > 10 * r["floor"], (name, r)


def test_real_held_out_images_score_at_the_floor(all_digits):
    zs = []
    for split in range(12):
        perm = torch.randperm(len(all_digits), generator=torch.Generator().manual_seed(100 + split))
        held, pool = perm[:500], perm[500:]
        pool_set = ImageSet("digits", "pool", all_digits.images[pool], all_digits.labels[pool], 17)
        r = fd_with_floor(all_digits.images[held], pool_set, seed=split, draws=20)
        assert r["n"] == 500 and r["n_reference"] == 797
        zs.append((r["fd"] - r["floor"]) / r["floor_sd"])
    assert abs(np.mean(zs)) <= 1.5, zs


def test_the_held_real_images_of_a_draw_score_exactly_the_floor(all_digits):
    # fairness, exactly: hand in as "samples" the very images that draw 0 holds out (its split
    # is the first torch.randperm(M) of a Generator seeded with `seed`, as documented); they are
    # compared with the same reference under the same n, so fd must equal the floor.
    for N in (400, 1000):
        split = torch.randperm(len(all_digits), generator=torch.Generator().manual_seed(7))
        r = fd_with_floor(all_digits.images[split[:N]], all_digits, seed=7, draws=1)
        assert r["n"] == N and r["fd"] == pytest.approx(r["floor"], rel=1e-9), r


def test_sample_count_is_capped_and_padding_is_undone(all_digits):
    g = torch.Generator().manual_seed(1)
    samples = all_digits.images[torch.randint(0, len(all_digits), (1500,), generator=g)]
    r = fd_with_floor(samples, "digits", seed=3)
    assert (r["n"], r["n_reference"]) == (int(0.6 * 1797), 1797 - int(0.6 * 1797))
    padded_set = load_dataset("digits", "all", pad_to=12)
    padded = torch.nn.functional.pad(samples, (2, 2, 2, 2), value=-1.0)
    assert fd_with_floor(padded, padded_set, seed=3) == r
    with pytest.raises(ValueError, match="like the digits images"):
        fd_with_floor(samples[:, :, :7], all_digits)


# --- bits_per_dim_of ----------------------------------------------------------------------------------

def expected_nelbo_nats(mean, std, schedule, optimal):
    """E[-ELBO] in nats per sample, for x_0 ~ N(mean, diag(std^2)), continuous decoder,
    sigma_t^2 = beta_tilde_t, and eps_hat = E[eps | x_t] (optimal) or 0.

    With x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, mu_tilde - mu_theta =
    beta_t / (sqrt(alpha_t) sqrt(1 - ab_t)) (eps_hat - eps) (DDPM eq. 10, 11), so
      L_{t-1} = beta_t^2 / (2 beta_tilde_t alpha_t (1 - ab_t)) (eps - eps_hat)^2,   t >= 2,
      L_0 = log(2 pi beta_1) / 2 + (eps - eps_hat)^2 / (2 alpha_1),
      L_T = [-log(1 - ab_T) + (1 - ab_T) + ab_T x_0^2 - 1] / 2,
    and E(eps - eps_hat)^2 = Var(eps | x_t) = ab_t s^2 / v_t, v_t = ab_t s^2 + 1 - ab_t (optimal),
    or 1 (zero model).  Summed over dimensions.
    """
    b, a, ab, bt = schedule.betas, schedule.alphas, schedule.alpha_bars, schedule.beta_tildes
    s2, m2 = std ** 2, mean ** 2
    err = [ab[t] * s2 / (ab[t] * s2 + 1 - ab[t]) if optimal else torch.ones_like(s2)
           for t in range(schedule.T + 1)]
    T = schedule.T
    total = 0.5 * (-torch.log(1 - ab[T]) + (1 - ab[T]) + ab[T] * (m2 + s2) - 1)
    total = total + 0.5 * math.log(2 * math.pi * b[1]) + err[1] / (2 * a[1])
    for t in range(2, T + 1):
        total = total + b[t] ** 2 / (2 * bt[t] * a[t] * (1 - ab[t])) * err[t]
    return float(total.sum())


def test_bits_per_dim_of_gaussian_data_hits_the_closed_form():
    schedule = linear_schedule(T=100, beta_start=1e-3, beta_end=0.15)
    mean, std = torch.tensor([0.3, -0.5, 0.0], dtype=torch.float64), torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64)
    law = gaussian(mean, std)
    x0 = law.sample(4000, torch.Generator().manual_seed(0))
    models = {True: law.eps_model(schedule), False: lambda xt, t: torch.zeros_like(xt)}
    results = {}
    for optimal, model in models.items():
        got, se = bits_per_dim_of(model, x0, schedule, levels=None,
                                  generator=torch.Generator().manual_seed(1), batch_size=1000)
        true = expected_nelbo_nats(mean, std, schedule, optimal) / (3 * math.log(2))
        assert abs(got - true) <= 4 * se, (optimal, got, true, se)
        results[optimal] = (got, se)
    assert results[True][0] + 4 * results[True][1] < results[False][0] - 4 * results[False][1]


def test_bits_per_dim_of_is_the_elbo_terms_sum_and_a_fitted_model_beats_zero():
    schedule = linear_schedule(T=100, beta_start=1e-3, beta_end=0.15)
    x = load_digits("test").images.double()                            # (299, 1, 8, 8), 17 levels
    fit = gaussian(x.reshape(len(x), -1).mean(0), x.reshape(len(x), -1).std(0).clamp(min=0.05))
    def fitted(xt, t):
        return fit.optimal_eps(xt.reshape(len(xt), -1), t, schedule).reshape(xt.shape)
    mean, se = bits_per_dim_of(fitted, x, schedule, 17, torch.Generator().manual_seed(2), batch_size=len(x))
    direct = bits_per_dim(elbo_terms(fitted, x, schedule, torch.Generator().manual_seed(2), levels=17)
                          .sum(dim=1), 64)
    assert mean == pytest.approx(float(direct.mean()), rel=1e-12)
    assert se == pytest.approx(float(direct.std()) / math.sqrt(len(x)), rel=1e-12)
    zero_mean, zero_se = bits_per_dim_of(lambda xt, t: torch.zeros_like(xt), x, schedule, 17,
                                         torch.Generator().manual_seed(3), batch_size=100)
    assert mean + 4 * se < zero_mean - 4 * zero_se
    with pytest.raises(ValueError, match="at least 2 images"):
        bits_per_dim_of(fitted, x[:1], schedule, 17)
