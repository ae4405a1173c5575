"""Exact savings in the CFG-batched UNet call, switched on only inside our sampler.

Under classifier-free guidance the UNet sees a 2B batch whose halves differ only in the text
context: [z_t | M↓ | z_n] and t are the same for the negative and the prompted branch. So:

1. Text-free prefix: `conv_in` and the leading down blocks that have no cross-attention (the tiny
   UNet's full-resolution level) see identical halves; they run on the first B rows and the
   result is repeated. Same numbers, half the work at the highest resolution.
2. Cross-attention keys/values: `to_k(c)`, `to_v(c)` of the text context c (2B, L, D) are the same
   at every one of the T steps; they are computed at the first step and reused.

Both are applied by temporarily replacing `forward` on those module instances (`fast_unet`
context manager) and restored on exit, so the same UNet object behaves stock everywhere else
(training, the stock diffusers pipeline timed beside ours).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


class _HalfBatch:
    """Run a module on the first half of a batch whose halves are equal; repeat the outputs."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.forward = module.forward
        self.enabled = False

    @staticmethod
    def _half(x: Any, n: int) -> Any:
        return x[: n // 2] if isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] == n else x

    @staticmethod
    def _double(y: Any) -> Any:
        if isinstance(y, torch.Tensor):
            return torch.cat([y, y])
        if isinstance(y, tuple):
            return tuple(_HalfBatch._double(v) for v in y)
        return y

    def __call__(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        n = hidden_states.shape[0]
        if not self.enabled or n % 2:
            return self.forward(hidden_states, *args, **kwargs)
        args = tuple(self._half(a, n) for a in args)
        kwargs = {k: self._half(v, n) for k, v in kwargs.items()}
        return self._double(self.forward(hidden_states[: n // 2], *args, **kwargs))


class _ContextCache:
    """Cache a projection of the (constant) text context across denoising steps."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.forward = module.forward
        self.key: torch.Tensor | None = None  # held strongly, so its memory cannot be reused
        self.value: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if x is self.key and self.value is not None:
            return self.value
        out = self.forward(x, *args, **kwargs)
        self.key, self.value = x, out
        return out


@contextlib.contextmanager
def fast_unet(unet: torch.nn.Module, cfg_batched: bool) -> Iterator[None]:
    """Within the block, `unet` shares the text-free prefix across CFG halves (when
    `cfg_batched`) and caches cross-attention K/V of the context. Restored on exit."""
    patched: list[torch.nn.Module] = []

    def patch(module: torch.nn.Module, wrapper: Any) -> None:
        module.forward = wrapper  # instance attribute shadows the class method
        patched.append(module)

    try:
        if cfg_batched:
            prefix = [unet.conv_in]
            for block in unet.down_blocks:
                if getattr(block, "has_cross_attention", False) or block.__class__.__name__.startswith("CrossAttn"):
                    break
                prefix.append(block)
            for module in prefix:
                wrapper = _HalfBatch(module)
                wrapper.enabled = True
                patch(module, wrapper)
        for name, module in unet.named_modules():
            # diffusers names cross-attention `attn2` in transformer blocks; only its K/V see the text
            if name.endswith("attn2") and getattr(module, "is_cross_attention", False):
                patch(module.to_k, _ContextCache(module.to_k))
                patch(module.to_v, _ContextCache(module.to_v))
        yield
    finally:
        for module in patched:
            module.__dict__.pop("forward", None)
