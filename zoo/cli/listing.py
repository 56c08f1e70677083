"""`zoo list`: models, targets and runtimes (with whether their usage reporting is known to be off)."""
from __future__ import annotations

import typer

from zoo.checkpoints.loader import manifest
from zoo.exporters import all_targets
from zoo.cli.common import JsonOpt, print_json
from zoo.core import telemetry
from zoo.core.model.specs import MODELS
from zoo.core.withheld import withheld


def runtime_entries(targets) -> list[dict]:
    """Per runtime: the targets it runs and whether its usage reporting is known to be off in the
    processes zoo runs it in (every reporter it loads has its switch in effect; a runtime none of
    its targets declares is unknown, never called off)."""
    out: dict[str, dict] = {}
    for t in targets:
        for rt in t.runtimes:
            e = out.setdefault(rt, {"name": rt, "targets": [], "reporters": set(), "declared": True})
            e["targets"].append(t.name)
            if rt in t.telemetry:
                e["reporters"].update(t.telemetry[rt])
            else:
                e["declared"] = False
    entries = []
    for e in out.values():
        names = sorted(e["reporters"])
        reporters = telemetry.describe(names)
        known_off = e["declared"] and all(r["off"] for r in reporters)
        if not e["declared"]:
            note = "unknown: a target running it does not declare its usage reporting (not audited by ultraface-zoo)"
        elif names:
            note = "its usage reporting is turned off in every process zoo starts: " + "; ".join(
                f"{r['name']}: {r['switch']}" for r in reporters)
        else:
            note = "reports no usage (the OS-level audit of the tests sees no look-up or connection)"
        entries.append({"name": e["name"], "targets": e["targets"],
                        "telemetry": {"known_off": known_off, "reporters": reporters, "note": note}})
    return entries


def list_(json_: JsonOpt = False) -> None:
    """Registered models and export targets (with their availability and runtimes)."""
    ckpts = manifest()
    models = []
    for s in MODELS.values():
        c = ckpts[s.checkpoint]
        models.append({
            "id": s.id, "arch": s.arch, "input_size": list(s.input_size), "labels": list(s.labels),
            "checkpoint": c.name, "sha256": c.sha256, "bytes": c.bytes, "url": c.url, "licence": c.licence,
            "widerface_ap": c.widerface_ap,
        })
    targets = []
    for t in all_targets():
        miss = t.missing()
        targets.append({
            "name": t.name, "description": t.description, "precisions": list(t.precisions), "heads": list(t.heads),
            "layout": t.layout, "source": t.source, "runtimes": list(t.runtimes), "available": not miss, "missing": miss,
            "install": f"pip install 'ultraface-zoo[{t.extra}]'" if miss and t.extra else None,
            "dynamic": t.dynamic, "dynamic_reason": None if t.dynamic else t.dynamic_reason,
        })
    runtimes = runtime_entries(all_targets())
    held = [w.to_dict() for w in withheld()]
    if json_:
        print_json({"models": models, "targets": targets, "runtimes": runtimes,
                    "telemetry": {"environment": dict(telemetry.ENV),
                                  "reporters": telemetry.describe(list(telemetry.REPORTERS))},
                    "withheld": held})
        return
    typer.echo("models:")
    for m in models:
        w, h = m["input_size"]
        typer.echo(f"  {m['id']:<10} {m['arch']:<5} {w}x{h}  labels={','.join(m['labels'])}  {m['checkpoint']}")
    typer.echo("targets:")
    for t in targets:
        state = "available" if t["available"] else f"missing {', '.join(t['missing'])} -> {t['install']}"
        dyn = "dynamic" if t["dynamic"] else "fixed  "
        typer.echo(f"  {t['name']:<11} {','.join(t['precisions']):<15} {t['layout']}  {dyn}  runtimes={','.join(t['runtimes'])}  {state}")
    typer.echo("runtimes (usage reporting):")
    for r in runtimes:
        tel = r["telemetry"]
        state = ("off: " + ", ".join(x["switch"].split(" (")[0] for x in tel["reporters"]) if tel["reporters"] else "none")
        if not tel["known_off"]:
            state = "UNKNOWN or on: " + tel["note"]
        typer.echo(f"  {r['name']:<13} {state}")
    no = [t for t in targets if not t["dynamic"]]
    if no:
        typer.echo("fixed-size only (no --dynamic): " + "; ".join(f"{t['name']}: {t['dynamic_reason']}" for t in no))
    if held:
        typer.echo("withheld from the default release matrix (measured to fail their tier; `zoo release --with-withheld` "
                   "and `zoo export` still build them):")
        for w in held:
            typer.echo(f"  {w['model']:<10} {w['target']}/{w['precision']}: {w['reason']}; use {w['instead']}")
