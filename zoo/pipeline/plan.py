"""What to build: validate target, precision and head names, expand flavours, order the jobs."""
from __future__ import annotations

from dataclasses import dataclass, field

from zoo.exporters import get_target, runtime_names, target_names
from zoo.core.errors import ZooError, nearest
from zoo.core.manifest import PRECISIONS, ArtifactKey, Failure, min_runtime_suffix, sort_key
from zoo.core.toolchain import drift_line
from zoo.core.withheld import Withheld, withheld_for


@dataclass(frozen=True)
class Job:
    target: str
    precision: str
    head: str
    intermediate: bool = False  # an ONNX file other targets read, not an artifact
    dynamic: bool = False  # batch, height and width free at run time (`zoo export --dynamic`)
    min_runtime: str = ""  # "" or NAME==VERSION: converted for that older runtime release (`--min-runtime`)

    @property
    def key(self) -> tuple:
        return (self.target, self.precision, self.head, self.dynamic, self.min_runtime)

    def artifact_key(self, model: str) -> ArtifactKey:
        return ArtifactKey(model, self.target, self.precision, self.head, self.dynamic, self.min_runtime)

    def label(self) -> str:
        return self.artifact_key("").label()

    def stem(self, model: str) -> str:
        """The base file name: ``rfb-320-raw-fp32``, ``rfb-320-raw-fp32-dynamic``, ``rfb-320-raw-int8-for-mnn3.0.0``."""
        return (f"{model}-{self.head}-{self.precision}" + ("-dynamic" if self.dynamic else "")
                + min_runtime_suffix(self.min_runtime))


@dataclass
class Plan:
    jobs: list[Job]
    skipped: list[dict] = field(default_factory=list)  # combinations a target does not offer
    unavailable: list[Job] = field(default_factory=list)  # jobs whose target's runtime is missing

    def unavailable_failures(self, model: str) -> list[Failure]:
        return [Failure(model, j.target, j.precision, j.head, missing_runtime_error(j.target), j.dynamic,
                        j.min_runtime)
                for j in self.unavailable]


def tools_in_use(targets: list[str]) -> dict[str, str]:
    """The installed version of every converter and runtime package the targets use (what the manifest
    records per artifact), torch included: the PyTorch reference and the ONNX intermediate need it."""
    out = dict(get_target("onnx").tool_versions())
    for t in targets:
        out.update(get_target(t).tool_versions())
    return out


def toolchain_warning(targets: list[str]) -> str | None:
    """One warning line when a package the targets use differs from the toolchain lock, else None."""
    return drift_line(tools_in_use(targets))


def missing_runtime_error(target: str) -> str:
    t = get_target(target)
    return f"missing {', '.join(t.missing())}: {t.install_hint()}"


def check_names(precisions: list[str], head: str | None) -> None:
    for p in precisions:
        if p not in PRECISIONS:
            raise ZooError(f"unknown precision {p!r}{nearest(p, PRECISIONS)}; valid: {', '.join(PRECISIONS)}")
    if head is not None and head not in ("decoded", "raw"):
        raise ZooError(f"unknown head {head!r}; valid: decoded, raw")


#: package names people write for a registered runtime
_RUNTIME_ALIASES = {"tflite": "litert", "tflite-runtime": "litert", "ai-edge-litert": "litert",
                    "opencv-python": "opencv", "opencv-python-headless": "opencv"}


def parse_min_runtime(text: str | None, targets: list) -> dict[str, str]:
    """``--min-runtime NAME==VERSION[,...]`` -> {target name: "NAME==VERSION"} for the given targets (Target
    objects) that run on NAME; refused in one line when a runtime is unknown, named twice, run by none of
    the targets, or when a target running on it has no converter option for that release."""
    if not text:
        return {}
    specs: dict[str, str] = {}
    for item in (s.strip() for s in text.split(",")):
        name, sep, version = item.partition("==")
        name, version = name.strip().lower(), version.strip()
        name = _RUNTIME_ALIASES.get(name, name)
        if not sep or not name or not version:
            raise ZooError(f"bad --min-runtime {item!r}: expected NAME==VERSION, e.g. mnn==3.0.0")
        if name not in runtime_names():
            raise ZooError(f"--min-runtime: unknown runtime {name!r}{nearest(name, runtime_names())}; "
                           f"known: {', '.join(runtime_names())}")
        if name in specs:
            raise ZooError(f"--min-runtime names {name} twice")
        specs[name] = version
    out: dict[str, str] = {}
    for name, version in specs.items():
        users = [t for t in targets if name in t.runtimes]
        if not users:
            raise ZooError(f"--min-runtime {name}=={version}: none of the targets ({', '.join(t.name for t in targets)}) "
                           f"runs on {name}")
        for t in users:
            t.min_runtime_option(name, version)  # raises when no converter option can target it
            if t.name in out:
                raise ZooError(f"--min-runtime: target {t.name} is named by two runtimes ({out[t.name]}, {name}=={version})")
            out[t.name] = f"{name}=={version}"
    return out


DYNAMIC_HEAD = "raw"


def make_plan(targets: list[str], precisions: list[str], head: str | None, nms: bool = False,
              dynamic: bool = False, min_runtime: str | None = None) -> Plan:
    """Validate names, expand target x precision, put the ONNX that others read first.

    ``dynamic``: every job makes a dynamic artifact (raw head: the priors of the actual size are made on
    the host); a target whose runtime cannot is skipped with the reason, and none able is an error.
    ``min_runtime`` (``NAME==VERSION[,...]``): the jobs of targets running on NAME convert for that
    older release."""
    check_names(precisions, head)
    objs = [get_target(t) for t in dict.fromkeys(targets)]  # raises on unknown names
    older = parse_min_runtime(min_runtime, objs)
    plan = Plan(jobs=[])
    if dynamic:
        if nms:
            raise ZooError("--nms bakes the priors of one size into the graph: it cannot be combined with --dynamic")
        if head not in (None, DYNAMIC_HEAD):
            raise ZooError(f"--dynamic artifacts have the raw head (the priors of the actual size are made on the host): "
                           f"drop --head {head}")
        head = DYNAMIC_HEAD
        for t in objs:
            if not t.dynamic:
                plan.skipped.append({"target": t.name, "dynamic": True, "reason": f"{t.name} cannot be dynamic: {t.dynamic_reason}"})
        objs = [t for t in objs if t.dynamic]
        if not objs:
            raise ZooError("--dynamic: none of the requested targets can have a free input size ("
                           + "; ".join(s["reason"] for s in plan.skipped) + ")")
    for t in objs:
        if not t.available():
            for p in precisions:
                if p in t.precisions:
                    plan.unavailable.append(Job(t.name, p, head or t.default_head(p), dynamic=dynamic,
                                                min_runtime=older.get(t.name, "")))
            continue
        offered = [p for p in precisions if p in t.precisions]
        for p in precisions:
            if p not in t.precisions:
                plan.skipped.append({"target": t.name, "precision": p, "reason": f"{t.name} offers {', '.join(t.precisions)}"})
        if not offered:
            raise ZooError(f"target {t.name!r} has none of the precisions {', '.join(precisions)}; it has {', '.join(t.precisions)}")
        for p in offered:
            h = head or t.default_head(p)
            if h not in t.heads:
                raise ZooError(f"target {t.name!r} has no {h!r} head; it has: {', '.join(t.heads)}")
            for v in t.expand(p):
                why = t.head_reason(v, h)
                if why:  # a combination the target does not make: skipped with its reason, not a FAIL (issue 39)
                    plan.skipped.append({"target": t.name, "precision": v, "head": h, "reason": why})
                    continue
                plan.jobs.append(Job(t.name, v, h, dynamic=dynamic, min_runtime=older.get(t.name, "")))
    if nms:
        if "onnx" not in [t.name for t in objs]:
            raise ZooError("--nms makes an end-to-end ONNX graph: add onnx to --to")
        plan.jobs.append(Job("onnx", "fp32", "nms"))
    if not plan.jobs and not plan.unavailable and any("head" in s for s in plan.skipped):
        raise ZooError("nothing to build: " + "; ".join(s["reason"] for s in plan.skipped if "head" in s))
    plan.jobs.sort(key=lambda j: j.target != "onnx")  # stable: ONNX (which others read) first
    return plan


def plan_of(jobs: list[Job]) -> Plan:
    """A plan of given jobs (a release shard's), with the unavailable ones set aside."""
    plan = Plan(jobs=[])
    for j in jobs:
        (plan.jobs if get_target(j.target).available() else plan.unavailable).append(j)
    plan.jobs.sort(key=lambda j: j.target != "onnx")
    return plan


def matrix(models: list[str], targets: list[str], precisions: list[str], with_withheld: bool = False) -> list[tuple[str, Job]]:
    """Every (model, job) of a release, in manifest order; combinations a target lacks are left out, and so
    are the flavours withheld from the default matrix (zoo.core.withheld) unless ``with_withheld``."""
    out = []
    for m in models:
        plan = make_plan(targets, precisions, None)
        out += [(m, j) for j in plan.jobs + plan.unavailable
                if with_withheld or withheld_for(m, j.target, j.precision) is None]
    order = target_names()
    out.sort(key=lambda mj: (models.index(mj[0]), *sort_key(mj[1].artifact_key(mj[0]), order)[1:]))
    return out


def withheld_in(models: list[str], targets: list[str], precisions: list[str]) -> list[Withheld]:
    """The withheld flavours (zoo.core.withheld) a release of this matrix leaves out by default."""
    out = []
    for m in models:
        plan = make_plan(targets, precisions, None)
        for j in plan.jobs + plan.unavailable:
            w = withheld_for(m, j.target, j.precision)
            if w is not None and w not in out:
                out.append(w)
    return out


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ZooError(f"bad --shard {text!r}: expected K/N, e.g. 1/2") from None
    if not (n >= 1 and 1 <= k <= n):
        raise ZooError(f"bad --shard {text!r}: need 1 <= K <= N")
    return k, n


def shard_of(entries: list, shard: tuple[int, int] | None) -> list:
    if not shard:
        return entries
    k, n = shard
    return [e for i, e in enumerate(entries) if i % n == k - 1]
