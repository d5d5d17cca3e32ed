"""The ``pathomics`` command: every capability reachable headless.

Each capability folder contributes its sub-commands through a ``register(subparsers)``
function in its own ``cli`` module; heavy libraries (torch, pandas, lifelines...) are only
imported inside the command handlers so that ``pathomics --help`` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pathomics_desktop.errors import UserError

#: Modules that add sub-commands. Each exposes ``register(subparsers) -> None`` and sets
#: ``func`` on its parsers (``parser.set_defaults(func=handler)``); a handler takes the
#: parsed ``argparse.Namespace`` and returns an exit status.
COMMAND_MODULES = (
    "pathomics_desktop.registry.cli",
    "pathomics_desktop.cohort.cli",
    "pathomics_desktop.demo.cli",
    "pathomics_desktop.stats.cli",
    "pathomics_desktop.registry.slides_cli",
    "pathomics_desktop.slides.cli",
    "pathomics_desktop.learning.cli",
    "pathomics_desktop.learning.project_cli",
    "pathomics_desktop.signature.cli",
    "pathomics_desktop.signature.report_cli",
    "pathomics_desktop.jobs.cli",
    "pathomics_desktop.registry.users_cli",
    "pathomics_desktop.reports.cli",
)

#: ``pathomics bench NAME`` -> "module:function"; the function takes the remaining argv
#: list and returns an exit status. Each benchmark prints a ratio against a baseline
#: measured in the same run.
BENCHMARKS = {
    "import": "pathomics_desktop.registry.bench:main",
    "stats": "pathomics_desktop.stats.bench:main",
    "lasso": "pathomics_desktop.stats.lasso_bench:main",
    "analytics": "pathomics_desktop.analytics.bench:main",
    "tiling": "pathomics_desktop.slides.bench:main",
    "inference": "pathomics_desktop.learning.bench:main",
    "viewer": "pathomics_desktop.ui.viewer_bench:main",  # needs Qt (offscreen is fine)
    "views": "pathomics_desktop.figures.bench:main",
}


def command_group(sub, name: str, help: str = "") -> "argparse._SubParsersAction":
    """The sub-command list of ``pathomics NAME``, created on first use, so that several
    capability modules can add to one group (e.g. ``slides``, ``models``)."""
    parser = sub.choices.get(name)
    if parser is None:
        parser = sub.add_parser(name, help=help)
        parser.set_defaults(func=lambda _args: (parser.print_help(), 1)[1])
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")


def _bench(args: argparse.Namespace) -> int:
    module_name, func_name = BENCHMARKS[args.name].split(":")
    module = importlib.import_module(module_name)
    return int(getattr(module, func_name)(args.bench_args) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pathomics",
        description="Pathomics Desktop command line: registry, slides, models, statistics.",
    )
    parser.add_argument("--version", action="version", version="pathomics-desktop 0.1.0")
    parser.add_argument("--project", metavar="DIR", default=None,
                        help="project folder (default: $PATHOMICS_PROJECT or the current directory); "
                             "also accepted after the command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:  # a missing module is an installation error: let it raise
        importlib.import_module(name).register(sub)
    bench = sub.add_parser("bench", help="run a benchmark (prints ratios against a same-run baseline)")
    bench.add_argument("name", choices=sorted(BENCHMARKS))
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="options for the benchmark")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
