"""Feature extractors chosen from the observation spec: Nature CNN for Atari-sized pixels, a
small CNN for MinAtar's 10x10 grids, an MLP for vectors."""

from __future__ import annotations

import math

from torch import nn

from frugal.envs.base import EnvSpec
from frugal.errors import FrugalError
from frugal.nets.layers import PixelScaler, minatar_cnn, mlp, nature_cnn

TORSOS = ("auto", "nature", "minatar", "mlp")


def make_torso(spec: EnvSpec, kind: str, hidden: tuple[int, ...]) -> tuple[nn.Module, int]:
    """kind: auto | nature | minatar | mlp. Returns (module, number of output features)."""
    if kind not in TORSOS:
        raise FrugalError(f"unknown torso '{kind}'; valid: {', '.join(TORSOS)}")
    if kind == "auto":
        if spec.pixels:
            kind = "minatar" if spec.obs_shape[-1] <= 16 else "nature"
        else:
            kind = "mlp"
    if kind == "mlp":
        if spec.pixels:
            raise FrugalError("an mlp torso needs vector observations; use torso=auto")
        size = math.prod(spec.obs_shape)
        body = mlp((size, *hidden))
        return nn.Sequential(nn.Flatten(), body), hidden[-1] if hidden else size
    if not spec.pixels:
        raise FrugalError(f"a {kind} torso needs pixel observations; use torso=auto")
    build = nature_cnn if kind == "nature" else minatar_cnn
    body, out = build(spec.obs_shape[0], spec.obs_shape[-1])
    return nn.Sequential(PixelScaler(spec.obs_high), body), out
