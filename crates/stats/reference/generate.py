"""Reference values for switchyard-stats, computed with scipy and statsmodels.

Run:  python3 crates/stats/reference/generate.py > crates/stats/reference/values.json
(the versions are pinned in requirements.txt beside this file; a test re-runs this script in
a virtualenv and fails when its output differs from the committed values.json).

Conventions (docs/statistics.md): two-sided tests; proportions use the pooled SE for the
z-test and the unpooled Wald SE for the absolute interval; the relative interval is the delta
method with Bernoulli variances p(1-p); means use Welch's t with Welch-Satterthwaite df, the
relative interval the delta method with that df; Bayesian proportions use Beta(1,1) priors.
"""

import json
import math
import sys

import numpy as np
import scipy
import statsmodels
from scipy import integrate, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest


def fl(x):
    if x is None:
        return None
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return None
    return x


def beta_bayes(xc, nc, xt, nt):
    """P(pT > pC) and expected losses under Beta(1,1) priors, by adaptive quadrature."""
    c = stats.beta(1 + xc, 1 + nc - xc)
    t = stats.beta(1 + xt, 1 + nt - xt)
    pts = sorted(
        {
            float(np.clip(d.mean() + k * d.std(), 0, 1))
            for d in (c, t)
            for k in (-40, -20, -10, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 10, 20, 40)
        }
        | {0.0, 1.0}
    )
    quad = lambda f: sum(
        integrate.quad(f, a, b, epsabs=0, epsrel=1e-13, limit=400)[0]
        for a, b in zip(pts, pts[1:])
        if b > a
    )
    chance = quad(lambda x: t.pdf(x) * c.cdf(x))
    # E[(A - x)^+] for A ~ Beta(a, b) is mean(A) * sf_{Beta(a+1, b)}(x) - x * sf_A(x).
    def excess(d, a, b, x):
        return a / (a + b) * stats.beta(a + 1, b).sf(x) - x * d.sf(x)

    ac, bc = 1 + xc, 1 + nc - xc
    at, bt = 1 + xt, 1 + nt - xt
    loss_treatment = quad(lambda x: t.pdf(x) * excess(c, ac, bc, x))  # E[max(pC - pT, 0)]
    loss_control = quad(lambda x: c.pdf(x) * excess(t, at, bt, x))  # E[max(pT - pC, 0)]
    return chance, loss_treatment, loss_control


def proportions(xc, nc, xt, nt, alpha=0.05):
    pc, pt = xc / nc, xt / nt
    abs_lift = pt - pc
    rel = abs_lift / pc if pc > 0 else None
    if 0 < xc + xt < nc + nt:
        z, p = proportions_ztest([xt, xc], [nt, nc], value=0, alternative="two-sided", prop_var=False)
    else:
        z, p = None, None
    q = stats.norm.ppf(1 - alpha / 2)
    se = math.sqrt(pc * (1 - pc) / nc + pt * (1 - pt) / nt)
    ci_abs = [abs_lift - q * se, abs_lift + q * se]
    if pc > 0:
        var_rel = pt * (1 - pt) / (nt * pc**2) + pt**2 * pc * (1 - pc) / (nc * pc**4)
        ci_rel = [rel - q * math.sqrt(var_rel), rel + q * math.sqrt(var_rel)]
    else:
        ci_rel = None
    chance, lt, lc = beta_bayes(xc, nc, xt, nt)
    return {
        "control_rate": pc,
        "treatment_rate": pt,
        "abs_lift": abs_lift,
        "rel_lift": fl(rel),
        "z": fl(z),
        "p_value": fl(p),
        "ci_abs": [fl(v) for v in ci_abs],
        "ci_rel": None if ci_rel is None else [fl(v) for v in ci_rel],
        "chance_to_beat_control": chance,
        "expected_loss_treatment": lt,
        "expected_loss_control": lc,
    }


def means(mc, sc, nc, mt, st, nt, alpha=0.05):
    res = stats.ttest_ind_from_stats(mt, st, nt, mc, sc, nc, equal_var=False)
    vc, vt = sc**2 / nc, st**2 / nt
    df = (vc + vt) ** 2 / (vc**2 / (nc - 1) + vt**2 / (nt - 1))
    diff = mt - mc
    se = math.sqrt(vc + vt)
    q = stats.t.ppf(1 - alpha / 2, df)
    rel = diff / mc if mc != 0 else None
    if mc != 0:
        var_rel = st**2 / (nt * mc**2) + mt**2 * sc**2 / (nc * mc**4)
        ci_rel = [rel - q * math.sqrt(var_rel), rel + q * math.sqrt(var_rel)]
    else:
        ci_rel = None
    return {
        "diff": diff,
        "rel_lift": fl(rel),
        "t": fl(res.statistic),
        "df": fl(df),
        "p_value": fl(res.pvalue),
        "ci_abs": [diff - q * se, diff + q * se],
        "ci_rel": ci_rel,
    }


def srm(observed, weights):
    total = sum(observed)
    expected = [w / sum(weights) * total for w in weights]
    chi2, p = stats.chisquare(observed, expected)
    return {"chi2": float(chi2), "df": len(observed) - 1, "p_value": float(p)}


def adjust(method, p_values, alpha=0.05):
    name = {"holm": "holm", "bh": "fdr_bh", "bonferroni": "bonferroni"}[method]
    reject, adjusted, _, _ = multipletests(p_values, alpha=alpha, method=name)
    return {"adjusted": [float(v) for v in adjusted], "reject": [bool(r) for r in reject]}


def sample_size(baseline, mde, alpha=0.05, power=0.8):
    p1, p2 = baseline, baseline * (1 + mde)
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    n = (za + zb) ** 2 * (p1 * (1 - p1) + p2 * (1 - p2)) / (p2 - p1) ** 2
    per_arm = math.ceil(n - 1e-9)
    return {"per_arm": per_arm, "total": 2 * per_arm, "treatment_rate": p2, "exact": n}


def power_of(baseline, mde, per_arm, alpha=0.05):
    p1, p2 = baseline, baseline * (1 + mde)
    se = math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / per_arm)
    q = stats.norm.ppf(1 - alpha / 2)
    shift = abs(p2 - p1) / se
    return stats.norm.cdf(shift - q) + stats.norm.cdf(-shift - q)


def mde_of(baseline, per_arm, alpha=0.05, power=0.8):
    from scipy.optimize import brentq

    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    p1 = baseline
    n = lambda m: (za + zb) ** 2 * (p1 * (1 - p1) + p1 * (1 + m) * (1 - p1 * (1 + m))) / (p1 * m) ** 2 - per_arm
    return brentq(n, 1e-9, 1 / p1 - 1 - 1e-12, xtol=1e-15, rtol=1e-15)


def confidence_sequence(estimate, se, n, alpha=0.05, tuning=5000):
    """Asymptotic confidence sequence (Waudby-Smith et al.), GrowthBook's parameterisation."""
    rho = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)
    sigma = se * math.sqrt(n)  # per-unit standard deviation of the estimate
    half = sigma * math.sqrt(2 * (n * rho**2 + 1) / (n**2 * rho**2) * math.log(math.sqrt(n * rho**2 + 1) / alpha))
    # Always-valid p-value: the smallest alpha whose sequence excludes 0 (solved numerically).
    def excludes(a):
        r = math.sqrt((-2 * math.log(a) + math.log(-2 * math.log(a) + 1)) / tuning)
        h = sigma * math.sqrt(2 * (n * r**2 + 1) / (n**2 * r**2) * math.log(math.sqrt(n * r**2 + 1) / a))
        return abs(estimate) - h
    if excludes(1 - 1e-12) <= 0:
        p = 1.0
    else:
        from scipy.optimize import brentq
        p = brentq(excludes, 1e-300, 1 - 1e-12, xtol=1e-300, rtol=1e-14) if excludes(1e-300) < 0 else 0.0
    return {"ci": [estimate - half, estimate + half], "p_value": p}


def gaussian_bayes(diff, se):
    """Flat prior: posterior N(diff, se^2); chance P(delta > 0), losses E[max(-d,0)], E[max(d,0)]."""
    z = diff / se
    chance = stats.norm.cdf(z)
    # E[max(X, 0)] for X ~ N(m, s^2) = m*Phi(m/s) + s*phi(m/s)
    loss_control = diff * stats.norm.cdf(z) + se * stats.norm.pdf(z)
    loss_treatment = -diff * stats.norm.cdf(-z) + se * stats.norm.pdf(z)
    return {"chance_to_beat_control": chance, "expected_loss_treatment": loss_treatment, "expected_loss_control": loss_control}


def cuped(y, x, xy, n):
    """Per-arm sums (sum, sum of squares) of y and x and the cross-product, pooled theta."""
    out = []
    # theta pooled over arms: cov(y, x) / var(x) over all units
    N = sum(n)
    sy, sx, sxy = sum(a[0] for a in y), sum(a[0] for a in x), sum(xy)
    syy, sxx = sum(a[1] for a in y), sum(a[1] for a in x)
    cov = (sxy - sx * sy / N) / (N - 1)
    var_x = (sxx - sx**2 / N) / (N - 1)
    theta = cov / var_x
    mean_x = sx / N
    for (ys, yss), (xs, xss), c, k in zip(y, x, xy, n):
        my, mx = ys / k, xs / k
        vy = (yss - ys**2 / k) / (k - 1)
        vx = (xss - xs**2 / k) / (k - 1)
        cxy = (c - xs * ys / k) / (k - 1)
        adj_mean = my - theta * (mx - mean_x)
        adj_var = vy + theta**2 * vx - 2 * theta * cxy
        out.append({"mean": adj_mean, "variance": adj_var})
    return {"theta": theta, "arms": out}


def sample_cuped(seed, n, rho):
    rng = np.random.default_rng(seed)
    arms = []
    for effect in (0.0, 0.3):
        x = rng.normal(10, 3, n)
        y = 2 + rho * x + rng.normal(effect, 2, n)
        arms.append((x, y))
    y = [(float(a[1].sum()), float((a[1] ** 2).sum())) for a in arms]
    x = [(float(a[0].sum()), float((a[0] ** 2).sum())) for a in arms]
    xy = [float((a[0] * a[1]).sum()) for a in arms]
    return {"y": y, "x": x, "xy": xy, "n": [n, n]}


def main():
    out = {"scipy": scipy.__version__, "statsmodels": statsmodels.__version__, "cases": {}}
    cases = out["cases"]
    cases["proportions"] = []
    for xc, nc, xt, nt in [
        (100, 1000, 120, 1000),
        (0, 1000, 0, 1000),
        (0, 1000, 5, 1000),
        (3, 50, 9, 60),
        (50000, 1000000, 50600, 1000000),
        (900, 9000, 130, 1000),
        (1000, 1000, 990, 1000),
        (1, 2, 2, 3),
        (123456, 1000000, 121000, 990000),
    ]:
        cases["proportions"].append({"input": [xc, nc, xt, nt], "expect": proportions(xc, nc, xt, nt)})
    cases["means"] = []
    for args in [
        (10.0, 2.0, 1000, 10.3, 2.1, 1000),
        (5.0, 1.0, 30, 5.5, 3.0, 12),
        (100.0, 40.0, 1000000, 100.05, 40.0, 1000000),
        (0.0, 1.0, 50, 0.2, 1.0, 50),
        (3.2, 0.5, 2, 3.9, 0.7, 3),
    ]:
        cases["means"].append({"input": list(args), "expect": means(*args)})
    cases["srm"] = []
    for observed, weights in [
        ([5000, 5100, 4900], [1, 1, 1]),
        ([50000, 50600], [1, 1]),
        ([9000, 1100], [9, 1]),
        ([1000, 1000, 0], [1, 1, 1]),
        ([10, 0], [1, 1]),
        ([500123, 499100, 250400, 250377], [2, 2, 1, 1]),
    ]:
        cases["srm"].append({"input": {"observed": observed, "weights": weights}, "expect": srm(observed, weights)})
    cases["adjust"] = []
    for method in ("holm", "bh", "bonferroni"):
        for ps in ([0.01, 0.04, 0.03], [0.001, 0.2, 0.049, 0.03, 0.5], [0.9], [0.0, 1.0, 0.05, 0.05]):
            cases["adjust"].append({"input": {"method": method, "p_values": ps}, "expect": adjust(method, ps)})
    cases["sample_size"] = []
    for baseline, mde, alpha, power in [
        (0.1, 0.05, 0.05, 0.8),
        (0.02, 0.1, 0.05, 0.9),
        (0.5, 0.01, 0.01, 0.8),
        (0.001, 0.2, 0.05, 0.8),
    ]:
        cases["sample_size"].append(
            {"input": [baseline, mde, alpha, power], "expect": sample_size(baseline, mde, alpha, power)}
        )
    cases["power"] = []
    for args in [(0.1, 0.05, 57756, 0.05), (0.02, 0.1, 1000, 0.05), (0.5, -0.02, 20000, 0.01)]:
        cases["power"].append({"input": list(args), "expect": power_of(*args)})
    cases["mde"] = []
    for args in [(0.1, 57756, 0.05, 0.8), (0.02, 10000, 0.05, 0.9), (0.5, 1000, 0.01, 0.8)]:
        cases["mde"].append({"input": list(args), "expect": mde_of(*args)})
    cases["confidence_sequence"] = []
    for estimate, se, n in [(0.02, 0.01, 2000), (0.02, 0.005, 20000), (0.0, 0.01, 5000), (0.3, 0.05, 400), (-0.01, 0.002, 1000000)]:
        cases["confidence_sequence"].append(
            {"input": [estimate, se, n], "expect": confidence_sequence(estimate, se, n)}
        )
    cases["gaussian_bayes"] = []
    for diff, se in [(0.3, 0.2), (-0.05, 0.01), (0.0, 1.0), (1.0, 0.1)]:
        cases["gaussian_bayes"].append({"input": [diff, se], "expect": gaussian_bayes(diff, se)})
    cases["cuped"] = []
    for seed, n, rho in [(1, 2000, 0.8), (2, 500, 0.2)]:
        data = sample_cuped(seed, n, rho)
        cases["cuped"].append({"input": data, "expect": cuped(data["y"], data["x"], data["xy"], data["n"])})
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
