"""The UltraFace networks (``slim`` and ``RFB``) in PyTorch, for any class count and input size.

Module names follow the layout of the public checkpoints (``base_net.i``,
``extras.0``, ``classification_headers.k``, ``regression_headers.k``), so a
checkpoint loads with strict key and shape checks and no renaming.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from zoo.core.model import priors as P
from zoo.core.errors import ZooError
from zoo.core.model.specs import ARCHES, HEADS  # noqa: F401  (re-exported)
BASE_CHANNELS = 16


def _conv_bn(inp: int, out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)
    )


def _conv_dw(inp: int, out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.ReLU(inplace=True),
        nn.Conv2d(inp, out, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU(inplace=True),
    )


def _sep_conv(inp: int, out: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (bias) + ReLU + pointwise 1x1 (bias)."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp),
        nn.ReLU(),
        nn.Conv2d(inp, out, 1),
    )


class BasicConv(nn.Module):
    """Conv (no bias) + BatchNorm + optional ReLU."""

    def __init__(self, inp: int, out: int, kernel: int, padding: int = 0, dilation: int = 1, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(inp, out, kernel, 1, padding, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(out, eps=1e-5, momentum=0.01, affine=True)
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.relu(x) if self.relu is not None else x


class RFBBlock(nn.Module):
    """Receptive-field block of the RFB variant (layer 7, 64 -> 64 channels)."""

    def __init__(self, channels: int = 64, scale: float = 1.0):
        super().__init__()
        mid = channels // 8  # 8
        self.scale = scale
        self.branch0 = nn.Sequential(
            BasicConv(channels, mid, 1, relu=False),
            BasicConv(mid, 2 * mid, 3, padding=1),
            BasicConv(2 * mid, 2 * mid, 3, padding=2, dilation=2, relu=False),
        )
        self.branch1 = nn.Sequential(
            BasicConv(channels, mid, 1, relu=False),
            BasicConv(mid, 2 * mid, 3, padding=1),
            BasicConv(2 * mid, 2 * mid, 3, padding=3, dilation=3, relu=False),
        )
        self.branch2 = nn.Sequential(
            BasicConv(channels, mid, 1, relu=False),
            BasicConv(mid, (mid // 2) * 3, 3, padding=1),
            BasicConv((mid // 2) * 3, 2 * mid, 3, padding=1),
            BasicConv(2 * mid, 2 * mid, 3, padding=5, dilation=5, relu=False),
        )
        self.ConvLinear = BasicConv(6 * mid, channels, 1, relu=False)
        self.shortcut = BasicConv(channels, channels, 1, relu=False)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)
        y = self.ConvLinear(y)
        return self.relu(y * self.scale + self.shortcut(x))


def _backbone(arch: str) -> nn.Sequential:
    c = BASE_CHANNELS
    layer7 = RFBBlock(c * 4) if arch == "rfb" else _conv_dw(c * 4, c * 4, 1)
    return nn.Sequential(
        _conv_bn(3, c, 2),
        _conv_dw(c, c * 2, 1),
        _conv_dw(c * 2, c * 2, 2),
        _conv_dw(c * 2, c * 2, 1),
        _conv_dw(c * 2, c * 4, 2),
        _conv_dw(c * 4, c * 4, 1),
        _conv_dw(c * 4, c * 4, 1),
        layer7,
        _conv_dw(c * 4, c * 8, 2),
        _conv_dw(c * 8, c * 8, 1),
        _conv_dw(c * 8, c * 8, 1),
        _conv_dw(c * 8, c * 16, 2),
        _conv_dw(c * 16, c * 16, 1),
    )


#: Backbone layer indices whose outputs feed detection levels 0, 1, 2.
SOURCE_LAYERS = (7, 10, 12)


class UltraFace(nn.Module):
    """UltraFace detector.

    ``head="decoded"`` returns ``(scores, boxes)``: softmaxed scores (N, P, K)
    and corner boxes (N, P, 4) in [0, 1]. ``head="raw"`` returns softmaxed
    scores and the raw box offsets (N, P, 4), for the host to decode.
    """

    def __init__(self, arch: str, num_classes: int = 2, width: int = 320, height: int = 240, head: str = "decoded"):
        super().__init__()
        if arch not in ARCHES:
            raise ZooError(f"unknown architecture {arch!r}; known: {', '.join(ARCHES)}")
        if head not in HEADS:
            raise ZooError(f"unknown head {head!r}; known: {', '.join(HEADS)}")
        if num_classes < 2:
            raise ZooError(f"num_classes must be >= 2 (background + at least one class), got {num_classes}")
        self.arch = arch
        self.num_classes = num_classes
        self.width, self.height = width, height
        self.head = head
        c = BASE_CHANNELS
        anchors = P.anchors_per_level()
        self.base_net = _backbone(arch)
        self.extras = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(c * 16, c * 4, 1), nn.ReLU(), _sep_conv(c * 4, c * 16, stride=2), nn.ReLU())]
        )
        in_ch = (c * 4, c * 8, c * 16, c * 16)

        def heads(per_anchor: int) -> nn.ModuleList:
            mods: list[nn.Module] = [_sep_conv(in_ch[k], anchors[k] * per_anchor) for k in range(3)]
            mods.append(nn.Conv2d(in_ch[3], anchors[3] * per_anchor, 3, padding=1))
            return nn.ModuleList(mods)

        self.classification_headers = heads(num_classes)
        self.regression_headers = heads(4)
        self.register_buffer("priors", torch.from_numpy(P.generate_priors(width, height)), persistent=False)

    def _level(self, k: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        conf = self.classification_headers[k](x).permute(0, 2, 3, 1).contiguous()
        loc = self.regression_headers[k](x).permute(0, 2, 3, 1).contiguous()
        return conf.view(conf.size(0), -1, self.num_classes), loc.view(loc.size(0), -1, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_from(0, x, [], [])

    def stage_of(self, module: str) -> int:
        """The stage of `forward_from` that runs ``module`` (a module name; a detection header belongs
        to the stage whose output its level reads). Stages: each backbone layer, then each extra."""
        parts = module.split(".")
        n = len(self.base_net)
        if len(parts) >= 2 and parts[1].isdigit():
            k = int(parts[1])
            if parts[0] == "base_net" and k < n:
                return k
            if parts[0] == "extras" and k < len(self.extras):
                return n + k
            if parts[0] in ("classification_headers", "regression_headers") and k < len(SOURCE_LAYERS) + len(self.extras):
                return SOURCE_LAYERS[k] if k < len(SOURCE_LAYERS) else n + k - len(SOURCE_LAYERS)
        raise ValueError(f"{module!r} is not a module of a stage of the UltraFace network")

    def forward_from(self, stage: int, x: torch.Tensor, confs: list, locs: list,
                     keep: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The forward pass from ``stage`` on, given that stage's input ``x`` and the detection levels
        (``confs``, ``locs``) the stages before it produced; ``forward`` is ``forward_from(0, x, [], [])``.
        ``keep``: a list that receives (input, confs, locs) of every stage run, so a later call can
        start at any of them and compute exactly what the whole pass computes from there (the int8
        sensitivity analysis changes one layer at a time and reruns only what follows it)."""
        confs, locs = list(confs), list(locs)
        n = len(self.base_net)
        for i in range(stage, n + len(self.extras)):
            if keep is not None:
                keep.append((x, list(confs), list(locs)))
            x = self.base_net[i](x) if i < n else self.extras[i - n](x)
            if i >= n or i in SOURCE_LAYERS:
                c, l = self._level(len(confs), x)
                confs.append(c)
                locs.append(l)
        scores = torch.softmax(torch.cat(confs, 1), dim=2)
        locations = torch.cat(locs, 1)
        if self.head == "raw":
            return scores, locations
        return scores, decode_boxes(locations, self.priors)


def decode_boxes(locations: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Raw offsets (N, P, 4) + priors (P, 4) -> corner boxes (N, P, 4)."""
    centers = locations[..., :2] * P.CENTER_VARIANCE * priors[..., 2:] + priors[..., :2]
    sizes = torch.exp(locations[..., 2:] * P.SIZE_VARIANCE) * priors[..., 2:]
    return torch.cat((centers - sizes / 2, centers + sizes / 2), dim=-1)


# --------------------------------------------------------------------------- state dicts

def infer_arch(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """Which architecture a state dict's keys belong to, or None if neither."""
    if any(k.startswith("base_net.7.branch0.") for k in state_dict):
        return "rfb"
    if "base_net.7.0.weight" in state_dict:
        return "slim"
    return None


def infer_num_classes(state_dict: Mapping[str, torch.Tensor]) -> int:
    w = state_dict.get("classification_headers.0.2.weight")
    if w is None or w.ndim != 4:
        raise ZooError("checkpoint has no 'classification_headers.0.2.weight': not an UltraFace state dict")
    anchors = P.anchors_per_level()[0]
    if w.shape[0] % anchors:
        raise ZooError(f"classification head has {w.shape[0]} channels, not a multiple of {anchors} anchors")
    return int(w.shape[0] // anchors)


def load_state_dict_strict(model: UltraFace, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load with strict key and shape checks, with messages a user can act on."""
    found = infer_arch(state_dict)
    if found is None:
        raise ZooError(f"{source}: not an UltraFace checkpoint (no slim or RFB layer 7 keys)")
    if found != model.arch:
        raise ZooError(f"{source}: this is a {found!r} checkpoint, not {model.arch!r}; use --arch {found}")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {missing[0]!r})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[0]!r})")
        raise ZooError(f"{source}: does not match the {model.arch} architecture: " + "; ".join(parts))
    for k, v in expected.items():
        got = state_dict[k]
        if not isinstance(got, torch.Tensor):
            raise ZooError(f"{source}: entry {k!r} is not a tensor")
        if tuple(got.shape) != tuple(v.shape):
            raise ZooError(f"{source}: {k!r} has shape {tuple(got.shape)}, the {model.arch} model expects {tuple(v.shape)}")
    model.load_state_dict(dict(state_dict), strict=True)
