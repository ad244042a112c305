"""The PNG of the latency distributions, push vs poll (matplotlib: the `bench` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def latency_plot(results: dict[str, Any], path: Path) -> Path | None:
    """Cumulative distributions on a log time axis, one panel per measure. None when
    matplotlib is missing or nothing to plot."""
    push, poll = results.get("latency_push"), results.get("latency_poll")
    if not push and not poll:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot")
        return None
    measures = (
        ("cancel_to_stop", "Cancel sent → agent knows it must stop"),
        ("cancel_to_terminal", "Cancel sent → terminal message (CANCELED)"),
    )
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for axis, (key, title) in zip(axes, measures, strict=True):
        for run, label, color in (
            (push, "push (StopJob on the agent's stream)", "tab:blue"),
            (poll, f"poll (GetBuild every {results.get('poll_interval', 2):g} s)", "tab:red"),
        ):
            if not run:
                continue
            values = sorted(run["samples_ms"][key])
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            median = run[key]["p50_ms"]
            axis.step(
                values, fractions, where="post", color=color, label=f"{label}, p50 {median:.1f} ms"
            )
            axis.axvline(median, color=color, linestyle=":", linewidth=1)
        axis.set_xscale("log")
        axis.set_xlabel("milliseconds (log scale)")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
    axes[0].set_ylabel("fraction of cancels")
    machine = results["machine"]
    figure.suptitle(
        f"buildcontrol: {push['cancels'] if push else poll['cancels']} cancels of running builds, "
        f"{results.get('agents')} agents — {machine['cores']} cores, Python {machine['python']}"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
