"""``pathomics bench viewer``: how fast the slide viewer answers zooms and pans.

On a synthetic pyramidal slide (default 100,000 x 100,000 px at 0.5 um/px, made once by
the tiling benchmark's :func:`pathomics_desktop.slides.bench.bench_slide` and kept in the
cache folder), the real viewer widget runs offscreen (``QT_QPA_PLATFORM=offscreen``) and a
scripted series of moves (default 200: wheel zooms by 2x about a random point and pans of
20-100 % of the view, seeded) is played. For each move it records the time from the move
to the first paint that drew every visible tile of the right level (*fully drawn*), and a
5 ms ``QTimer`` heartbeat on the GUI thread records the longest gap of its event loop (a
stall), and how much CPU time the GUI thread itself used within each gap (the part of a
stall that is the viewer's own work; on a busy machine the rest is waiting for a CPU).
The longest stall is attributed to what ran on the GUI thread during it: the
viewport paints (their time, thread CPU time, level, tiles and scaling), the tile batches
stored and the moves handled; the rest is time the GUI thread was not running viewer code
(other events, or waiting for a CPU). The viewer paints with fast scaling while it moves
and smoothly once it has been still for ``SETTLE_MS``; after every ``--settle-every``-th
move the bench waits for that smooth paint (not counted in the move's time, but its stall
is), so both kinds of paint are measured.

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
#: the longest wait for the smooth paint after a settled move (s)
SETTLE_TIMEOUT_S = 3.0


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

    def __init__(self, app, view, moves: list[tuple], timeout_s: float = 20.0, settle_every: int = 10):
        from PySide6.QtCore import Qt, QTimer

        self.app, self.view, self.moves, self.timeout_s = app, view, moves, timeout_s
        self.settle_every = settle_every
        self.canvas = view.canvas
        self.times: list[float] = []
        self.timeouts = 0
        #: (start, end) perf_counter seconds of every heartbeat gap
        self.gaps: list[tuple[float, float]] = []
        #: GUI-thread CPU seconds used within each gap
        self.gap_cpu: list[float] = []
        #: (start, end, move index) of the handling of every move
        self.move_log: list[tuple[float, float, int]] = []
        self.settles = 0
        self._settling = False
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
        now, cpu = time.perf_counter(), time.thread_time()
        if self._last_beat is not None:
            self.gaps.append((self._last_beat, now))
            self.gap_cpu.append(cpu - self._last_cpu)
        self._last_beat, self._last_cpu = now, cpu

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
        self.move_log.append((self._t0, time.perf_counter(), self._i))
        self._waiting = True

    def _check(self) -> None:
        from PySide6.QtCore import QTimer

        now = time.perf_counter()
        if self._settling:
            lp = self.canvas.last_paint
            if (self.canvas.is_complete() and lp.get("smooth") and not getattr(self.canvas, "moving", False)) \
                    or now - self._settle_t0 > SETTLE_TIMEOUT_S:
                self._settling = False
                QTimer.singleShot(0, self._next)
            return
        if not getattr(self, "_waiting", False):
            return
        if self.canvas.is_complete() or now - self._t0 > self.timeout_s:
            if not self.canvas.is_complete():
                self.timeouts += 1
            self.times.append(now - self._t0)
            self.tiles_read.append(len(self.view.loader.read_log) - self._reads0)
            self._waiting = False
            if self.settle_every and (self._i + 1) % self.settle_every == 0:
                self._settling, self._settle_t0 = True, now
                self.settles += 1
                return
            QTimer.singleShot(0, self._next)


def attribute_stall(gap: tuple[float, float], paints, batches, moves_log, moves: list[tuple]) -> dict:
    """What ran on the GUI thread during the heartbeat gap ``gap`` (start, end): the
    viewport paints, tile batches and move handling that overlap it (ms, clipped to the
    gap), and the rest (``other_ms``: time outside the viewer's code)."""
    a, b = gap

    def overlap(s: float, e: float) -> float:
        return max(0.0, min(e, b) - max(s, a)) * 1000.0

    out: dict = {"stall_ms": round((b - a) * 1000.0, 1), "paints": [], "batches": 0, "batch_ms": 0.0,
                 "move": None, "move_ms": 0.0}
    for start, end, cpu, smooth, level, visible, drawn, fallback, covers in paints:
        if overlap(start, end) > 0:
            out["paints"].append({"ms": round((end - start) * 1000.0, 1), "cpu_ms": round(cpu * 1000.0, 1),
                                  "smooth": smooth, "level": level, "visible": visible, "drawn": drawn,
                                  "covered": fallback, "coarser_tiles_drawn": covers})
    for start, end, n in batches:
        if overlap(start, end) > 0:
            out["batches"] += 1
            out["batch_ms"] += overlap(start, end)
    for start, end, i in moves_log:  # the move in progress: the last one begun before the gap ended
        if start <= b:
            out["move"] = {"index": i, "kind": moves[i][0], "factor": moves[i][3] if moves[i][0] == "zoom" else None}
        out["move_ms"] += overlap(start, end)
    paint_ms = sum(overlap(s, e) for s, e, *_rest in paints)
    out["paint_ms"] = round(paint_ms, 1)
    out["batch_ms"] = round(out["batch_ms"], 1)
    out["move_ms"] = round(out["move_ms"], 1)
    out["other_ms"] = round(max(0.0, out["stall_ms"] - paint_ms - out["batch_ms"] - out["move_ms"]), 1)
    return out


def describe_stall(st: dict) -> str:
    """One line: the longest stall and what made it."""
    move = st["move"]
    where = ""
    if move is not None:
        what = f"zoom x{move['factor']:g}" if move["kind"] == "zoom" else "pan"
        where = f" after move {move['index'] + 1} ({what})"
    parts = []
    for p in st["paints"]:
        parts.append(f"paint {p['ms']:.1f} ms (CPU {p['cpu_ms']:.1f} ms; level {p['level']}, {p['visible']} tiles, "
                     f"{p['drawn']} drawn, {p['covered']} covered by {p['coarser_tiles_drawn']} coarser, "
                     f"{'smooth' if p['smooth'] else 'fast'})")
    if st["batches"]:
        parts.append(f"{st['batches']} tile batch(es) stored {st['batch_ms']:.1f} ms")
    if st["move_ms"]:
        parts.append(f"move handling {st['move_ms']:.1f} ms")
    parts.append(f"{st['other_ms']:.1f} ms outside the viewer's code")
    cpu = f" (GUI-thread CPU {st['gui_cpu_ms']:.1f} ms)" if "gui_cpu_ms" in st else ""
    return f"longest GUI stall {st['stall_ms']:.1f} ms{where}{cpu}: " + "; ".join(parts)


def paint_stats(paints) -> dict:
    """Median and max (ms) of the fast and the smooth paints."""
    out = {}
    for name, want in (("fast", False), ("smooth", True)):
        ms = np.array([(e - s) * 1000.0 for s, e, _cpu, smooth, *_rest in paints if smooth == want])
        cpu = np.array([c * 1000.0 for _s, _e, c, smooth, *_rest in paints if smooth == want])
        out[name] = {"n": int(ms.size), "median_ms": float(np.median(ms)) if ms.size else 0.0,
                     "max_ms": float(ms.max()) if ms.size else 0.0,
                     "median_cpu_ms": float(np.median(cpu)) if cpu.size else 0.0}
    return out


def play(app, view, slide: Path, moves: list[tuple], *, synchronous: bool, start: tuple[tuple[float, float], float],
         settle_every: int = 10) -> dict:
    """Open ``slide`` in ``view`` (threads or naive), wait for the first full view, play."""
    view.show_file(slide, synchronous=synchronous)
    view.canvas.set_view(*start)
    t0 = time.perf_counter()
    while not view.canvas.is_complete() and time.perf_counter() - t0 < 60:
        app.processEvents()
        time.sleep(0.002)
    player = MovePlayer(app, view, moves, settle_every=settle_every)
    t_play = time.perf_counter()
    player.run()
    times = np.array(player.times) * 1000.0
    gaps = np.array([e - s for s, e in player.gaps] or [0.0]) * 1000.0
    gap_cpu = np.array(player.gap_cpu or [0.0]) * 1000.0
    # (getattr: the bench also runs on viewer versions without these logs)
    paints = [p for p in getattr(view.canvas, "paint_log", ()) if p[0] >= t_play]
    batches = [b for b in getattr(view.loader, "batch_log", ()) if b[0] >= t_play]
    worst = sorted(player.gaps, key=lambda g: g[1] - g[0], reverse=True)[:5]
    stalls = [attribute_stall(g, paints, batches, player.move_log, moves) for g in worst]
    cpu_of = dict(zip(player.gaps, player.gap_cpu))
    for st, g in zip(stalls, worst):
        st["gui_cpu_ms"] = round(cpu_of[g] * 1000.0, 1)
    out = {"moves": len(times), "median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95)),
           "max_ms": float(times.max()), "mean_ms": float(times.mean()), "stall_ms": float(gaps.max()),
           "heartbeat_gaps_over_50ms": int((gaps > 50).sum()), "timeouts": player.timeouts,
           "max_gui_cpu_in_gap_ms": float(gap_cpu.max()), "gaps_with_gui_cpu_over_50ms": int((gap_cpu > 50).sum()),
           "tiles_read": int(sum(player.tiles_read)), "dropped_requests": view.loader.dropped,
           "reader": view.loader.reader.backend, "settled_moves": player.settles,
           "paints": paint_stats(paints), "longest_stalls": stalls}
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
    ap.add_argument("--settle-every", type=int, default=10,
                    help="after every N-th move wait for the smooth paint (default 10; 0: never)")
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
    load_before = [round(v, 2) for v in os.getloadavg()]
    ours = play(app, view, slide, moves, synchronous=False, start=start, settle_every=args.settle_every)
    naive = None if args.no_baseline else play(app, view, slide, moves, synchronous=True, start=start,
                                               settle_every=args.settle_every)
    result = {"slide": str(slide), "size": list(grid.size), "levels": grid.levels,
              "downsamples": [round(d, 3) for d in grid.downsamples], "tile_px": grid.tile_size,
              "view": [vp.width(), vp.height()], "workers": args.workers, "cores": os.cpu_count(),
              "load_average_before": load_before,
              "load_average": [round(v, 2) for v in os.getloadavg()], "goals": GOALS, "ours": ours, "naive": naive}
    if naive:
        result["ratio_median_naive_over_ours"] = round(naive["median_ms"] / max(ours["median_ms"], 1e-9), 2)
        result["ratio_p95_naive_over_ours"] = round(naive["p95_ms"] / max(ours["p95_ms"], 1e-9), 2)
        result["ratio_stall_naive_over_ours"] = round(naive["stall_ms"] / max(ours["stall_ms"], 1e-9), 2)
    print(f"slide {slide.name}: {grid.size[0]} x {grid.size[1]} px, {grid.levels} levels {result['downsamples']}, "
          f"{grid.tile_size}-px tiles ({ours['reader']}); view {vp.width()} x {vp.height()}; {args.moves} moves; "
          f"{args.workers} reader threads on {os.cpu_count()} cores (load average before {load_before}, "
          f"after {result['load_average']})")

    def line(name: str, r: dict) -> str:
        return (f"{name}: move -> fully drawn median {r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
                f"max {r['max_ms']:.1f} ms; longest GUI stall {r['stall_ms']:.1f} ms "
                f"({r['heartbeat_gaps_over_50ms']} heartbeat gaps > 50 ms); {r['tiles_read']} tiles read, "
                f"{r['dropped_requests']} stale requests dropped, {r['timeouts']} timeouts")

    def paint_line(r: dict) -> str:
        f, s = r["paints"]["fast"], r["paints"]["smooth"]
        return (f"  most GUI-thread CPU within one heartbeat gap {r['max_gui_cpu_in_gap_ms']:.1f} ms "
                f"({r['gaps_with_gui_cpu_over_50ms']} gaps > 50 ms)\n"
                f"  paints: {f['n']} fast while moving (median {f['median_ms']:.1f} ms, CPU {f['median_cpu_ms']:.1f} ms, "
                f"max {f['max_ms']:.1f} ms), {s['n']} smooth when still (median {s['median_ms']:.1f} ms, "
                f"CPU {s['median_cpu_ms']:.1f} ms, max {s['max_ms']:.1f} ms); {r['settled_moves']} moves waited for "
                f"the smooth paint")

    print(line("viewer (worker threads)", ours))
    print(paint_line(ours))
    if ours["longest_stalls"]:
        print("  " + describe_stall(ours["longest_stalls"][0]))
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
