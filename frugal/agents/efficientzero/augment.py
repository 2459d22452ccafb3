"""EfficientZero's image augmentation for Atari-sized pixels (as in its released code)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def augment_pixels(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """DrQ-style random shift (replicate-pad by `pad`, random crop back) and intensity
    (x * (1 + 0.05 clip(N(0,1), -2, 2))) per sample: uint8/float [N, C, H, W] -> float."""
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x.float(), (pad, pad, pad, pad), mode="replicate")
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=generator.device)
    shifts = shifts.to(dev)
    rows = shifts[:, 0, None] + torch.arange(h, device=dev)[None]  # [N, H]
    cols = shifts[:, 1, None] + torch.arange(w, device=dev)[None]  # [N, W]
    batch = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [N, H, W, C]
    noise = torch.randn((n, 1, 1, 1), generator=generator, device=generator.device).to(dev)
    return out.permute(0, 3, 1, 2) * (1.0 + 0.05 * noise.clamp(-2.0, 2.0))
