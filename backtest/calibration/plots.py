"""Figures of calibration, validation and sensitivity (matplotlib; imported only when writing).

* :func:`marginals_figure` - weighted posterior marginal of each fitted parameter, prior range shaded;
* :func:`pairs_figure` - weighted scatter of every pair of fitted parameters;
* :func:`predictive_figure` - each target beside its posterior predictive distribution (the
  published bound, interval or point ± uncertainty drawn on it);
* :func:`sensitivity_figure` - ranked total-order Sobol indices (for the report).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, plt, size: float = 3.2):
    cols = min(3, max(1, n))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * 0.8 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def marginals_figure(res: Any):
    plt = _plt()
    fig, axes = _grid(len(res.priors), plt)
    w = res.posterior["weight"].to_numpy()
    for ax, p in zip(axes, res.priors):
        x = res.posterior[p.name].to_numpy()
        bins = np.geomspace(p.low, p.high, 25) if p.shape == "loguniform" else np.linspace(p.low, p.high, 25)
        ax.hist(x, bins=bins, weights=w, color="#4477aa", alpha=0.8)
        ax.axvline(res.medians[p.name], color="k", lw=1)
        lo, hi = res.bands[p.name]
        ax.axvspan(lo, hi, color="#aaaaaa", alpha=0.3, lw=0)
        if p.shape == "loguniform":
            ax.set_xscale("log")
        ax.set_xlim(p.low, p.high)
        ax.set_title(f"{p.name}\nmedian {res.medians[p.name]:.3g}, 90 % {lo:.3g}-{hi:.3g}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"posterior marginals ({', '.join(res.spec.events)}; prior range = x axis)", fontsize=10)
    fig.tight_layout()
    return fig


def pairs_figure(res: Any):
    plt = _plt()
    ps = res.priors
    n = len(ps)
    fig, axes = plt.subplots(n, n, figsize=(2.4 * n + 1, 2.4 * n + 0.5), squeeze=False)
    w = res.posterior["weight"].to_numpy()
    s = 8 + 60 * w / (w.max() or 1.0)
    for i, pi in enumerate(ps):
        for j, pj in enumerate(ps):
            ax = axes[i][j]
            ax.tick_params(labelsize=6)
            if i == j:
                ax.hist(res.posterior[pi.name].to_numpy(), bins=20, weights=w, color="#4477aa")
            else:
                ax.scatter(res.posterior[pj.name].to_numpy(), res.posterior[pi.name].to_numpy(), s=s, alpha=0.5, color="#4477aa", lw=0)
                ax.set_xlim(pj.low, pj.high)
                ax.set_ylim(pi.low, pi.high)
            if i == n - 1:
                ax.set_xlabel(pj.name, fontsize=7)
            if j == 0:
                ax.set_ylabel(pi.name, fontsize=7)
    fig.suptitle("posterior pairs (marker size = weight)", fontsize=10)
    fig.tight_layout()
    return fig


def draw_target(ax, f: Any, values: np.ndarray, weights: np.ndarray | None = None) -> None:
    """A target's predictive histogram with the published figure drawn on it."""
    from backtest.calibration.figures import format_value

    v = np.asarray(values, float)
    ok = np.isfinite(v)
    ref = [x for x in (f.target, f.low, f.high) if x is not None]
    if ok.any():
        ax.hist(v[ok], bins=20, weights=None if weights is None else np.asarray(weights)[ok], color="#4477aa", alpha=0.8)
    else:
        ax.text(0.5, 0.5, "no simulated value", transform=ax.transAxes, ha="center", fontsize=8)
    if f.kind == "lower_bound":
        ax.axvline(f.target, color="#cc3311", lw=1.5)
        ax.axvspan(f.target, max([f.target, *v[ok]]) * 1.05 + 1e-12, color="#cc3311", alpha=0.08, lw=0)
    elif f.kind == "interval":
        ax.axvspan(f.low, f.high, color="#228833", alpha=0.2, lw=0)
    elif f.kind == "point":
        ax.axvline(f.target, color="#228833", lw=1.5)
        ax.axvspan(f.target - f.uncertainty, f.target + f.uncertainty, color="#228833", alpha=0.15, lw=0)
    lo = min([*v[ok], *ref]) if ok.any() or ref else 0.0
    hi = max([*v[ok], *ref]) if ok.any() or ref else 1.0
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
    ax.set_xlim(lo - pad, hi + pad)
    ticks = ax.get_xticks()
    ax.set_xticks(ticks)
    ax.set_xticklabels([format_value(t, f.metric) for t in ticks], rotation=30, fontsize=6)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_title(f"{f.id}\n{f.kind}: {f.published_text()}", fontsize=7)
    ax.tick_params(axis="y", labelsize=6)


def predictive_figure(res: Any):
    plt = _plt()
    fig, axes = _grid(len(res.targets), plt, size=3.6)
    w = res.predictive["weight"].to_numpy()
    for ax, f in zip(axes, res.targets):
        draw_target(ax, f, res.predictive[f.id].to_numpy(), w)
    fig.suptitle("targets (red: lower bound, green: interval or point ± uncertainty) and their posterior predictive", fontsize=9)
    fig.tight_layout()
    return fig


def diagnostics_figure(res: Any):
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    g = [x["generation"] for x in res.generations]
    a.plot(g, [x["epsilon"] for x in res.generations], "o-", label="epsilon")
    a.plot(g, [x["distance_median"] for x in res.generations], "s--", label="median distance")
    a.set_xlabel("generation")
    a.legend(fontsize=7)
    b.plot(g, [x["acceptance_rate"] for x in res.generations], "o-", label="acceptance rate")
    b2 = b.twinx()
    b2.plot(g, [x["effective_sample_size"] for x in res.generations], "s--", color="#cc6677", label="ESS")
    b.set_xlabel("generation")
    b.set_ylabel("acceptance rate", fontsize=8)
    b2.set_ylabel("effective sample size", fontsize=8)
    fig.suptitle(f"ABC-SMC diagnostics: {sum(x['evaluations'] for x in res.generations)} simulations in {res.seconds:.0f} s", fontsize=9)
    fig.tight_layout()
    return fig


def write_pdf(figs: list, path: Path) -> None:
    """Write figures into one PDF (pages in order) and close them."""
    from matplotlib.backends.backend_pdf import PdfPages

    plt = _plt()
    with PdfPages(path) as pdf:
        for f in figs:
            pdf.savefig(f)
            plt.close(f)


def calibration_pdf(res: Any, path: Path) -> None:
    """Marginals, pairs (two or more parameters), targets beside their predictive, diagnostics."""
    figs = [marginals_figure(res)] + ([pairs_figure(res)] if len(res.priors) > 1 else []) + [predictive_figure(res), diagnostics_figure(res)]
    write_pdf(figs, Path(path))


def sensitivity_figure(table: Any, metric: str | None = None):
    """Ranked total-order (and first-order) Sobol indices of one metric (default: the first);
    ``table`` is :func:`backtest.calibration.sensitivity.sobol` output."""
    plt = _plt()
    metric = metric or table["metric"][0]
    t = table.filter(table["metric"] == metric).sort("ST", descending=True)
    fig, ax = plt.subplots(figsize=(6, 0.35 * t.height + 1.2))
    y = np.arange(t.height)[::-1]
    ax.barh(y, t["ST"].to_numpy(), color="#4477aa", label="total order ST")
    ax.barh(y, t["S1"].to_numpy(), color="#ccbb44", height=0.4, label="first order S1")
    ax.set_yticks(y)
    ax.set_yticklabels(t["param"].to_list(), fontsize=8)
    ax.set_xlabel("Sobol index (share of variance)")
    ax.set_title(f"what moves {metric}: Sobol indices over the priors", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

