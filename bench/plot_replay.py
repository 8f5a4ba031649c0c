#!/usr/bin/env python3
"""Chart of `kvoffload-replay --json FILE`: hit rate against cache capacity, one line per
policy, LRU drawn heavier and Belady's offline optimum (the ceiling at each capacity) dashed.
Usage:
    bench/plot_replay.py replay.json hit_rate.png
"""
import sys
import textwrap

from plot_common import plt, report_and_output


def main() -> int:
    report, chart = report_and_output(__doc__)
    results = report["results"]
    distinct = report.get("distinct_ids") or max(r["capacity"] for r in results)

    def share(r):  # percent of the trace's distinct blocks
        return 100.0 * r["capacity"] / distinct

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    belady = sorted({(share(r), r["belady_hit_rate"]) for r in results})
    ax.plot([p[0] for p in belady], [p[1] for p in belady], color="black", linestyle="--",
            linewidth=2, marker="s", label="Belady (offline optimum)")
    for policy in dict.fromkeys(r["policy"] for r in results):  # in the replay's order
        points = sorted((share(r), r["hit_rate"]) for r in results if r["policy"] == policy)
        style = dict(color="tab:gray", linewidth=3, zorder=3) if policy == "lru" else {}
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=policy, **style)
    ax.set_xscale("log")
    # Label each capacity as it was asked for ("5%"), or by its share when given in blocks.
    labels = {}
    for r in results:
        spec = r.get("capacity_spec", "")
        labels[share(r)] = spec if spec.endswith("%") else f"{r['capacity']} ({share(r):.2g}%)"
    ticks = sorted(labels)
    ax.set_xticks(ticks)
    ax.set_xticklabels([labels[t] for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("cache capacity (share of the trace's distinct blocks)")
    ax.set_ylabel("hit rate (ready blocks / block references)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    trace = report["trace"].rsplit("/", 1)[-1]
    requests = report.get("requests")
    title = f"Hit rate by capacity on {trace}" + (f" ({requests:,} requests)" if requests else "")
    ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=10)
    fig.tight_layout()
    fig.savefig(chart, dpi=120)
    print("wrote", chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
