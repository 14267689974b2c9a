"""Report page of the accounts (issue 12): contagion by source symbol -> liquidated symbol, and
the split of liquidations by account class. Reads the replay summary's ``contagion_*`` fields
(:data:`backtest.results.CONTAGION_KEYS`; definition in :mod:`backtest.contagion`)."""

from __future__ import annotations

from typing import Any

import numpy as np


def contagion_page(summary: Any, symbols: list[str], title: str):
    """The page: a heatmap of contagion notional (rows: source, columns: liquidated symbol) and a
    table of the account classes (accounts, positions liquidated, liquidated and contagion notional).
    ``summary``: a replay summary with the contagion fields (None fields: a page saying so)."""
    from backtest.report.common import draw_table, new_figure, usd, wrap
    from backtest.report.figures import short_sym

    fig = new_figure()
    fig.set_layout_engine("none")  # placed by hand (axes, text blocks and a table in figure fractions)
    fig.suptitle(title, fontsize=14, fontweight="bold")
    get = summary.get if hasattr(summary, "get") else (lambda k, d=None: getattr(summary, k, d))
    matrix = get("contagion_matrix_usd")
    if matrix is None:
        fig.text(0.5, 0.5, "accounts were off in this run: every position was its own account (no contagion)", ha="center", fontsize=11)
        return fig
    sources = [s for s in symbols if s in matrix] + [s for s in matrix if s not in symbols]
    m = np.array([[float(matrix.get(src, {}).get(s, 0.0)) for s in symbols] for src in sources]) if sources else np.zeros((0, len(symbols)))
    ax = fig.add_axes([0.09, 0.44, 0.5, 0.44])
    if m.size and m.max() > 0:
        im = ax.imshow(m / 1e6, cmap="Reds", aspect="auto")
        cb = fig.colorbar(im, ax=ax, fraction=0.05)
        cb.set_label("contagion notional (USD M)")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if m[i, j] > 0:
                    ax.text(j, i, usd(m[i, j], 1), ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] > 0.6 * m.max() else "black")
        ax.set_yticks(range(len(sources)), [short_sym(s) if s != "collateral" else "collateral" for s in sources])
    else:
        ax.text(0.5, 0.5, "no contagion liquidations", transform=ax.transAxes, ha="center")
        ax.set_yticks([])
    ax.set_xticks(range(len(symbols)), [short_sym(s) for s in symbols], rotation=30)
    ax.set_xlabel("liquidated symbol")
    ax.set_ylabel("source (largest loss in the account)")
    ax.set_title("contagion: notional liquidated by another symbol's move (replay)", fontsize=10)
    cont, own = get("contagion_liquidated_usd") or 0.0, get("contagion_own_market_usd") or 0.0
    share = get("contagion_share")
    fig.text(0.66, 0.86, wrap(
        f"contagion {usd(cont)} of {usd(cont + own)} liquidated ({'n/a' if share is None else f'{100 * share:.1f} %'}); "
        f"own-market {usd(own)}; account-engine deficits {usd(get('contagion_account_deficit_usd'))} "
        f"(charged to the insurance fund of each row's symbol); {get('contagion_engine_accounts') or 0:,} multi-symbol or "
        f"non-settlement-collateral accounts run by the account engine.", 52), va="top", fontsize=9)
    fig.text(0.66, 0.62, wrap("Definition: " + str(get("contagion_definition") or ""), 60), va="top", fontsize=7.5, color="#555555")
    classes = get("contagion_by_class") or {}
    label = {"isolated": "isolated (and cross rows opening or closing in the window: one account each)"}
    rows = [[label.get(name, name.replace("_", " ")), f"{int(v.get('accounts', 0)):,}", f"{float(v.get('positions_liquidated', 0.0)):,.0f}",
             usd(v.get("liquidated_usd")), usd(v.get("contagion_usd"))] for name, v in classes.items()]
    draw_table(fig, (0.09, 0.06, 0.82, 0.28), ["account class", "accounts (rows for isolated)", "positions liquidated (weighted)",
                                                 "liquidated", "of which contagion"], rows, [30, 18, 22, 12, 14], fontsize=9)
    return fig
