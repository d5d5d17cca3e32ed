"""``pathomics bench viewer``: how fast the slide viewer answers zooms and pans.

On a synthetic pyramidal slide (default 100,000 x 100,000 px at 0.5 um/px, made once by
the tiling benchmark's :func:`pathomics_desktop.slides.bench.bench_slide` and kept in the
cache folder), the real viewer widget runs offscreen (``QT_QPA_PLATFORM=offscreen``) and a
scripted series of moves (default 200: wheel zooms by 2x about a random point and pans of
20-100 % of the view, seeded) is played. For each move it records the time from the move
to the first paint that drew every visible tile of the right level (*fully drawn*), and a
5 ms ``QTimer`` heartbeat records the longest gap of the GUI thread's event loop (a stall).

The same moves are then played on the naive viewer: the same widget with tiles read
synchronously on the GUI thread while painting (no worker threads). Goals: median < 100
ms, 95th percentile < 250 ms, no stall > 50 ms; ratios are naive / ours.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GOALS = {"median_ms": 100.0, "p95_ms": 250.0, "stall_ms": 50.0}
HEARTBEAT_MS = 5


def script_moves(n: int, seed: int, fit_downsample: float, min_downsample: float = 0.5) -> list[tuple]:
    """``n`` moves as screen fractions: ("zoom", fx, fy, factor) or ("pan", fx, fy). About
    half are zooms (x2 in or out about the point (fx, fy) of the view, turned around at the
    zoom limits), the rest pans by 20-100 % of the view in a random direction."""
    rng = np.random.default_rng(seed)
    ds = fit_downsample
    moves = []
    for _ in range(n):
        if rng.random() < 0.5:
            factor = 2.0 if rng.random() < 0.55 else 0.5
            if ds / factor < min_downsample:
                factor = 0.5
            elif ds / factor > fit_downsample:
                factor = 2.0
            ds /= factor
            moves.append(("zoom", float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.8)), factor))
        else:
            angle = rng.uniform(0, 2 * np.pi)
            dist = rng.uniform(0.2, 1.0)
            moves.append(("pan", float(np.cos(angle) * dist), float(np.sin(angle) * dist)))
    return moves


class MovePlayer:
    """Plays moves on a viewer inside the Qt event loop and measures them."""

    def __init__(self, app, view, moves: list[tuple], timeout_s: float = 20.0):
        from PySide6.QtCore import Qt, QTimer

        self.app, self.view, self.moves, self.timeout_s = app, view, moves, timeout_s
        self.canvas = view.canvas
        self.times: list[float] = []
        self.timeouts = 0
        self.gaps: list[float] = []
        self.tiles_read: list[int] = []
        self._beat = QTimer()
        self._beat.setTimerType(Qt.TimerType.PreciseTimer)
        self._beat.setInterval(HEARTBEAT_MS)
        self._beat.timeout.connect(self._heartbeat)
        self._poll = QTimer()
        self._poll.setInterval(1)
        self._poll.timeout.connect(self._check)
        self._last_beat = None
        self._i = -1
        self._t0 = 0.0
        self._reads0 = 0
        self.done = False

    def _heartbeat(self) -> None:
        now = time.perf_counter()
        if self._last_beat is not None:
            self.gaps.append(now - self._last_beat)
        self._last_beat = now

    def run(self) -> None:
        from PySide6.QtCore import QEventLoop, QTimer

        self._loop = QEventLoop()
        self._beat.start()
        self._poll.start()
        QTimer.singleShot(0, self._next)
        self._loop.exec()
        self._beat.stop()
        self._poll.stop()

    def _next(self) -> None:
        from PySide6.QtCore import QPointF

        self._i += 1
        if self._i >= len(self.moves):
            self.done = True
            self._loop.quit()
            return
        move = self.moves[self._i]
        vw, vh = self.canvas.viewport().width(), self.canvas.viewport().height()
        self._reads0 = len(self.view.loader.read_log)
        self._t0 = time.perf_counter()
        if move[0] == "zoom":
            self.canvas.zoom_at(QPointF(move[1] * vw, move[2] * vh), move[3])
        else:
            self.canvas.pan_by(move[1] * vw, move[2] * vh)
        self._waiting = True

    def _check(self) -> None:
        if not getattr(self, "_waiting", False):
            return
        now = time.perf_counter()
        if self.canvas.is_complete() or now - self._t0 > self.timeout_s:
            if not self.canvas.is_complete():
                self.timeouts += 1
            self.times.append(now - self._t0)
            self.tiles_read.append(len(self.view.loader.read_log) - self._reads0)
            self._waiting = False
            from PySide6.QtCore import QTimer

            QTimer.singleShot(0, self._next)


def play(app, view, slide: Path, moves: list[tuple], *, synchronous: bool, start: tuple[tuple[float, float], float]) -> dict:
    """Open ``slide`` in ``view`` (threads or naive), wait for the first full view, play."""
    view.show_file(slide, synchronous=synchronous)
    view.canvas.set_view(*start)
    t0 = time.perf_counter()
    while not view.canvas.is_complete() and time.perf_counter() - t0 < 60:
        app.processEvents()
        time.sleep(0.002)
    player = MovePlayer(app, view, moves)
    player.run()
    times = np.array(player.times) * 1000.0
    gaps = np.array(player.gaps or [0.0]) * 1000.0
    out = {"moves": len(times), "median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95)),
           "max_ms": float(times.max()), "mean_ms": float(times.mean()), "stall_ms": float(gaps.max()),
           "heartbeat_gaps_over_50ms": int((gaps > 50).sum()), "timeouts": player.timeouts,
           "tiles_read": int(sum(player.tiles_read)), "dropped_requests": view.loader.dropped,
           "reader": view.loader.reader.backend}
    view.close_slide()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pathomics bench viewer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=100000, help="synthetic slide side in px (default 100000)")
    ap.add_argument("--slide-mpp", type=float, default=0.5, help="synthetic slide um/px (default 0.5)")
    ap.add_argument("--slide", default=None, help="use this slide instead of a synthetic one")
    ap.add_argument("--moves", type=int, default=200, help="scripted zooms and pans (default 200)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2, help="tile reader threads (default 2)")
    ap.add_argument("--view", default="1280x800", help="viewer canvas size WxH (default 1280x800)")
    ap.add_argument("--cache", default=None, help="folder for synthetic bench slides (kept between runs)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the naive (GUI-thread) viewer")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4096 px slide, 30 moves")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.moves = 4096, 30
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from pathomics_desktop.slides.bench import bench_slide
    from pathomics_desktop.slides.viewport import fit_downsample
    from pathomics_desktop.ui.views.viewer import SlideViewerView

    cache = Path(args.cache or Path(tempfile.gettempdir()) / "pathomics-bench")
    slide = Path(args.slide) if args.slide else bench_slide(cache, args.size, args.slide_mpp)
    vw, vh = (int(v) for v in args.view.lower().split("x"))
    app = QApplication.instance() or QApplication([])
    view = SlideViewerView(workers=args.workers)
    view.show()
    view.canvas.setFixedSize(vw, vh)
    app.processEvents()
    from pathomics_desktop.slides.viewer_tiles import PyramidTileReader

    with PyramidTileReader(slide) as reader:
        grid = reader.grid
    vp = view.canvas.viewport()
    fit = fit_downsample(grid.size, (vp.width(), vp.height()))
    start = ((grid.size[0] / 2.0, grid.size[1] / 2.0), fit)
    moves = script_moves(args.moves, args.seed, fit)
    ours = play(app, view, slide, moves, synchronous=False, start=start)
    naive = None if args.no_baseline else play(app, view, slide, moves, synchronous=True, start=start)
    result = {"slide": str(slide), "size": list(grid.size), "levels": grid.levels,
              "downsamples": [round(d, 3) for d in grid.downsamples], "tile_px": grid.tile_size,
              "view": [vp.width(), vp.height()], "workers": args.workers, "cores": os.cpu_count(),
              "load_average": [round(v, 2) for v in os.getloadavg()], "goals": GOALS, "ours": ours, "naive": naive}
    if naive:
        result["ratio_median_naive_over_ours"] = round(naive["median_ms"] / max(ours["median_ms"], 1e-9), 2)
        result["ratio_p95_naive_over_ours"] = round(naive["p95_ms"] / max(ours["p95_ms"], 1e-9), 2)
        result["ratio_stall_naive_over_ours"] = round(naive["stall_ms"] / max(ours["stall_ms"], 1e-9), 2)
    print(f"slide {slide.name}: {grid.size[0]} x {grid.size[1]} px, {grid.levels} levels {result['downsamples']}, "
          f"{grid.tile_size}-px tiles ({ours['reader']}); view {vp.width()} x {vp.height()}; {args.moves} moves; "
          f"{args.workers} reader threads on {os.cpu_count()} cores (load average {result['load_average']})")

    def line(name: str, r: dict) -> str:
        return (f"{name}: move -> fully drawn median {r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
                f"max {r['max_ms']:.1f} ms; longest GUI stall {r['stall_ms']:.1f} ms "
                f"({r['heartbeat_gaps_over_50ms']} heartbeat gaps > 50 ms); {r['tiles_read']} tiles read, "
                f"{r['dropped_requests']} stale requests dropped, {r['timeouts']} timeouts")

    print(line("viewer (worker threads)", ours))
    if naive:
        print(line("naive viewer (GUI-thread reads)", naive))
        print(f"ratio naive / ours: median {result['ratio_median_naive_over_ours']}x, "
              f"p95 {result['ratio_p95_naive_over_ours']}x, stall {result['ratio_stall_naive_over_ours']}x")
    ok = {"median": ours["median_ms"] < GOALS["median_ms"], "p95": ours["p95_ms"] < GOALS["p95_ms"],
          "stall": ours["stall_ms"] < GOALS["stall_ms"]}
    print(f"goals: median < {GOALS['median_ms']:.0f} ms ({'met' if ok['median'] else 'NOT met'}), "
          f"p95 < {GOALS['p95_ms']:.0f} ms ({'met' if ok['p95'] else 'NOT met'}), "
          f"stall < {GOALS['stall_ms']:.0f} ms ({'met' if ok['stall'] else 'NOT met'})")
    result["goals_met"] = ok
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    view.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
