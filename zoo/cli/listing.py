"""`zoo list`: models and targets."""
from __future__ import annotations

import typer

from zoo.checkpoints.loader import manifest
from zoo.exporters import all_targets
from zoo.cli.common import JsonOpt, print_json
from zoo.core.model.specs import MODELS
from zoo.core.withheld import withheld


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
    held = [w.to_dict() for w in withheld()]
    if json_:
        print_json({"models": models, "targets": targets, "withheld": held})
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
    no = [t for t in targets if not t["dynamic"]]
    if no:
        typer.echo("fixed-size only (no --dynamic): " + "; ".join(f"{t['name']}: {t['dynamic_reason']}" for t in no))
    if held:
        typer.echo("withheld from the default release matrix (measured to fail their tier; `zoo release --with-withheld` "
                   "and `zoo export` still build them):")
        for w in held:
            typer.echo(f"  {w['model']:<10} {w['target']}/{w['precision']}: {w['reason']}; use {w['instead']}")
