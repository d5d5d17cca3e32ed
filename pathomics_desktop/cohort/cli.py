"""Cohort commands: the patient flow and the data-set split."""

from __future__ import annotations

import json

from pathomics_desktop.registry.cli import add_project_option, opened_registry


def register(sub) -> None:
    p = sub.add_parser("flow", help="patient flow: enrolled, excluded by reason, included, data sets")
    p.add_argument("--json", action="store_true")
    add_project_option(p)
    p.set_defaults(func=cmd_flow)

    p = sub.add_parser("split", help="assign training / internal / external sets (frozen once assigned)")
    p.add_argument("--seed", type=int, help="default: the project's recorded split seed")
    p.add_argument("--train-fraction", type=float, help="default: the project's (0.7)")
    add_project_option(p)
    p.set_defaults(func=cmd_split)


def cmd_flow(args) -> int:
    from pathomics_desktop.cohort.flow import patient_flow

    with opened_registry(args) as (_project, registry):
        with registry.session() as session:
            flow = patient_flow(session)
    print(json.dumps(flow.to_dict(), indent=2) if args.json else flow.to_text())
    return 0


def cmd_split(args) -> int:
    from pathomics_desktop.cohort.splits import assign_splits

    with opened_registry(args) as (project, registry):
        study = project.settings["study"]
        seed = args.seed if args.seed is not None else int(study["split_seed"])
        fraction = args.train_fraction if args.train_fraction is not None else float(study["train_fraction"])
        with registry.session(reason="data-set split") as session:
            result = assign_splits(session, seed=seed, train_fraction=fraction)
    if args.seed is not None and args.seed != study["split_seed"]:
        study["split_seed"] = args.seed
        project.save()
    print(f"training {result.training}, internal {result.internal}, external {result.external} "
          f"({result.newly_assigned} newly assigned, seed {result.seed})")
    return 0
