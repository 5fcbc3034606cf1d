"""A pipeline Gantt chart: one row per rank, one box per forward or backward, labelled with m.

    events[r] = [(kind, micro, chunk, start, end), ...]    simulator.simulate()["events"],
                                                           or what the executor records
    draw(ax, events, title="1F1B, p = 4, M = 8")

Forward and backward have their own colour; chunk c of v is a shade of it (lighter for later
chunks), so an interleaved schedule shows which virtual stage each box belongs to. The white
gaps are the bubble (MATH A5). Times are drawn from the earliest start, so wall-clock stamps
of several processes (time.time()) and a simulator's clock starting at 0 look the same.
matplotlib is imported inside the functions, so importing this module costs nothing.
"""
from strategies.pipeline import schedules as S

COLORS = {S.FORWARD: "#1f77b4", S.BACKWARD: "#ff7f0e"}
OTHER = "#999999"        # any other kind an executor may record (a wait, a send)


def _shade(color, chunk, chunks):
    """``color`` mixed with white: chunk 0 as is, the last chunk half-way to white."""
    from matplotlib.colors import to_rgb
    mix = 0.5 * chunk / (chunks - 1) if chunks > 1 else 0.0
    return tuple(c + (1.0 - c) * mix for c in to_rgb(color))


def draw(ax, events, title="", colors=None):
    """Draw ``events`` (per rank: (kind, micro, chunk, start, end)) on the matplotlib ``ax``."""
    colors = {**COLORS, **(colors or {})}
    stamps = [e[3] for rank_events in events for e in rank_events]
    origin = min(stamps) if stamps else 0.0
    chunks = 1 + max((e[2] for rank_events in events for e in rank_events), default=0)
    for rank, rank_events in enumerate(events):
        for kind, micro, chunk, start, end in rank_events:
            color = _shade(colors.get(kind, OTHER), chunk, chunks)
            ax.barh(rank, end - start, left=start - origin, height=0.8, color=color,
                    edgecolor="black", linewidth=0.5)
            if micro >= 0:
                ax.text(start - origin + (end - start) / 2, rank, str(micro),
                        ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(events)))
    ax.set_yticklabels([f"rank {r}" for r in range(len(events))])
    ax.set_ylim(len(events) - 0.5, -0.5)          # rank 0 on top, as the data flows down
    ax.set_xlabel("time")
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=colors[S.FORWARD], label="forward"),
                       Patch(color=colors[S.BACKWARD], label="backward")],
              loc="upper right", fontsize=7)
    if title:
        ax.set_title(title)
    return ax
