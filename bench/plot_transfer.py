#!/usr/bin/env python3
"""Chart of `kvoffload-bench transfer --json FILE`: bandwidth against chunk size, one line per
method, the contiguous ceiling of the same run drawn across. Usage:
    bench/plot_transfer.py transfer.json transfer.png
"""
import sys
import textwrap

from plot_common import plt, report_and_output


def main() -> int:
    report, chart = report_and_output(__doc__)
    rows = [r for r in report["rows"] if r["section"] == "bandwidth"]
    directions = [d for d in ("store", "load") if any(r["direction"] == d for r in rows)]
    if not directions:  # the host engine's ceiling has direction "-"
        directions = sorted({r["direction"] for r in rows if r["method"] != "ceiling"})
    fig, axes = plt.subplots(1, len(directions), figsize=(6 * len(directions), 4.5), squeeze=False,
                             constrained_layout=True)
    for ax, direction in zip(axes[0], directions):
        mine = [r for r in rows if r["direction"] in (direction, "-")]
        for method in sorted({r["method"] for r in mine}):
            points = sorted((r["chunk_bytes"], r["value"]) for r in mine if r["method"] == method)
            style = dict(color="black", linestyle="--", linewidth=2) if method == "ceiling" else {}
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method, **style)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("chunk bytes per (block, layer)")
        ax.set_ylabel("GB/s")
        label = {"store": "store (device to host)", "load": "load (host to device)"}
        ax.set_title(label.get(direction, direction))
        ax.grid(True, alpha=0.3)
        ax.legend()
    # Wrapped to the figure's width (the host engine's device line is long); the constrained
    # layout keeps room above the panels for it.
    lines = textwrap.wrap("kvoffload transfer engine: " + report["device"], 75 * len(directions))
    if report.get("host_fallback"):
        lines.append("(host engine, no CUDA device: not GPU figures)")
    fig.suptitle("\n".join(lines), fontsize=9)
    fig.savefig(chart, dpi=120)
    print("wrote", chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
