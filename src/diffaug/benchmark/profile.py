"""Architecture-size measurement: throughput and memory of diffaug's code paths with models of
the pretrained profile's SIZE, built from config with RANDOM weights (no hub access needed).

Timings depend on the architecture, not on the weights' values, so this answers "how fast and
how big is the SD2-inpainting profile on this GPU" before any checkpoint is downloaded; quality
figures need the real weights. Sizes:
- `sd2`: Stable Diffusion 2 inpainting's VAE (128-256-512-512, f = 8), 9-channel UNet
  (320-640-1280-1280, cross-attention 1024, linear projections) and OpenCLIP-H-sized text
  encoder (1024 wide, 23 layers, 77 tokens); an SD-family validator denoiser (320-640-1280-1280,
  attention in the lowest level) on 4-channel latents; MONAI UNet segmenter (32..512).
- `sdxl`: SDXL inpainting 0.1's VAE, UNet (320-640-1280, 1/2/10 transformer layers, cross-attention
  2048, pooled-text + size/crop time-id conditioning) and both text towers (CLIP-L + OpenCLIP-bigG).
- `tiny`, `tiny_xl`: the same code with small widths, so the tests exercise it on a CPU.

Run on a GPU: `python -m diffaug.benchmark.profile --size sd2 --image-size 256 --batch 8
--dtype bfloat16 --out gpu_sd2.json` (docs/gpu.md records the figures measured on an H100).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch

SIZES: dict[str, dict[str, Any]] = {
    "sd2": {
        "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
        "unet": dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=1024,
                     attention_head_dim=(5, 10, 20, 20), use_linear_projection=True, norm_num_groups=32,
                     down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                     up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3),
        "text": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                     max_position_embeddings=77, hidden_act="gelu", projection_dim=512),
        "text_length": 77,
        "validator": dict(unet_block_out_channels=[320, 640, 1280, 1280], unet_layers_per_block=2, unet_attention=True,
                          vision_channels=320, vision_blocks=2, fused_channels=64, codec_channels=[64, 128, 256, 256],
                          norm_num_groups=32),
        "segmenter": [32, 64, 128, 256, 512],
    },
    "sdxl": {
        "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
        "vae_scaling": 0.13025,
        "unet": dict(block_out_channels=(320, 640, 1280), layers_per_block=2, cross_attention_dim=2048,
                     attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10),
                     use_linear_projection=True, norm_num_groups=32, addition_embed_type="text_time",
                     addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
        # CLIP ViT-L text tower + OpenCLIP bigG text tower (with the pooled projection SDXL uses)
        "text": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768),
        "text_2": dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                       max_position_embeddings=77, hidden_act="gelu", projection_dim=1280),
        "text_length": 77,
        "validator": dict(unet_block_out_channels=[320, 640, 1280, 1280], unet_layers_per_block=2, unet_attention=True,
                          vision_channels=320, vision_blocks=2, fused_channels=64, codec_channels=[64, 128, 256, 256],
                          norm_num_groups=32),
        "segmenter": [32, 64, 128, 256, 512],
    },
    "tiny_xl": {  # the SDXL code path (two text encoders, pooled embeds, size/crop time ids), small
        "vae": dict(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=16),
        "vae_scaling": 0.13025,
        "unet": dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=64, attention_head_dim=8,
                     norm_num_groups=16, addition_embed_type="text_time", addition_time_embed_dim=8,
                     projection_class_embeddings_input_dim=6 * 8 + 32,
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "UpBlock2D")),
        "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     max_position_embeddings=16, hidden_act="quick_gelu", projection_dim=32),
        "text_2": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       max_position_embeddings=16, hidden_act="gelu", projection_dim=32),
        "text_length": 16,
        "validator": dict(unet_block_out_channels=[16, 32], vision_channels=16, codec_channels=[16], norm_num_groups=16),
        "segmenter": [8, 16],
    },
    "tiny": {
        "vae": dict(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=16),
        "unet": dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, attention_head_dim=8,
                     norm_num_groups=16, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "UpBlock2D")),
        "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     max_position_embeddings=16, hidden_act="gelu", projection_dim=32),
        "text_length": 16,
        "validator": dict(unet_block_out_channels=[16, 32], vision_channels=16, codec_channels=[16], norm_num_groups=16),
        "segmenter": [8, 16],
    },
}

WORDS = ["[PAD]", "[UNK]", "polyp", "sessile", "flat", "lesion", "healthy", "mucosa", "normal", "colon", "tissue",
         "surface", "smooth", "irregular", "visible", "capillary", "pattern", "with", "long", "stalk", ","]


def _tokenizer(max_length: int) -> Any:
    """A word-level tokenizer built in code (the real CLIP BPE vocabulary would need the hub);
    prompts are padded to `max_length` tokens exactly like CLIP's, which is what timing sees."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   model_max_length=max_length)


def build_generator(size: str, device: torch.device, dtype: torch.dtype, image_size: int = 256) -> Any:
    """diffaug's Generator (VAE, 9-channel UNet, SD's noise schedule, CLIP text encoder) of `size`."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from diffaug.generator.models import Generator, train_scheduler
    from diffaug.generator.text import TextEncoder

    spec = SIZES[size]
    n = len(spec["vae"]["block_out_channels"])
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                        latent_channels=4, scaling_factor=spec.get("vae_scaling", 0.18215), sample_size=image_size,
                        **spec["vae"])
    unet = UNet2DConditionModel(in_channels=9, out_channels=4, sample_size=image_size // 2 ** (n - 1), **spec["unet"])
    ids = dict(vocab_size=len(WORDS), pad_token_id=0, bos_token_id=1, eos_token_id=1)
    encoders: list[Any] = [CLIPTextModel(CLIPTextConfig(**ids, **spec["text"]))]
    kind = "clip"
    if "text_2" in spec:  # SDXL: second encoder with the pooled projection
        encoders.append(CLIPTextModelWithProjection(CLIPTextConfig(**ids, **spec["text_2"])))
        kind = "sdxl"
    toks = [_tokenizer(spec["text_length"]) for _ in encoders]
    text = TextEncoder(kind, toks, encoders, spec["text_length"], device, dtype)
    vae = vae.to(device=device, dtype=dtype).eval()
    unet = unet.to(device=device, dtype=dtype).eval()
    return Generator(vae, unet, train_scheduler(), text, {"backbone": f"{size} (random weights)"})


def build_validator(size: str, vae: Any, device: torch.device, dtype: torch.dtype) -> Any:
    from diffaug.validator.inference import Validator
    from diffaug.validator.model import ValidatorNet, vae_downsample

    net = ValidatorNet(latent_channels=int(vae.config.latent_channels), vae_downsample=vae_downsample(vae),
                       num_classes=1, **SIZES[size]["validator"]).to(device)  # Validator casts it to dtype
    return Validator(net, vae, device=device, dtype=dtype)


def build_segmenter(size: str, image_size: int, device: torch.device) -> Any:
    from diffaug.segmenter.models import Segmenter, SegmenterNet

    net = SegmenterNet(architecture="unet", num_classes=2, image_size=image_size, channels=SIZES[size]["segmenter"])
    return Segmenter(net, device=device)


def bench_finetune_step(gen: Any, batch: int, image_size: int, rt: Any, repeats: int, out: dict[str, Any]) -> None:
    """One optimizer step of generator fine-tuning (eq. 7 loss, AdamW, fp32 master weights with
    autocast in the run's dtype, as accelerate's mixed precision does): s/step and peak memory."""
    import copy

    from diffaug.generator.losses import inpainting_loss
    from diffaug.timing import measure_training
    from diffaug.training.schedule import Schedule
    from diffaug.training.trainer import build_optimizer

    unet = copy.deepcopy(gen.unet).to(dtype=torch.float32).train()
    opt = build_optimizer(unet.parameters(), Schedule(steps=1, lr=1e-5, weight_decay=0.01))  # as the trainer builds it
    f = 2 ** (len(gen.vae.config.block_out_channels) - 1)
    h = image_size // f
    g = torch.Generator().manual_seed(0)
    z0, z_n, noise = (torch.randn(batch, 4, h, h, generator=g).to(rt.device) for _ in range(3))
    mask = (torch.rand(batch, 1, h, h, generator=g) > 0.7).float().to(rt.device)
    prompts = ["sessile polyp , smooth surface"] * batch
    ctx = gen.text.encode(prompts).float()
    added = gen.added_cond_kwargs(prompts, image_size, image_size)  # SDXL: pooled text + time ids
    if added is not None:
        added = {k: v.float() for k, v in added.items()}
    acp = gen.scheduler.alphas_cumprod.to(rt.device)
    t = torch.randint(0, len(acp), (batch,), generator=g).to(rt.device)
    a = acp[t].view(-1, 1, 1, 1)
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
    autocast = rt.device.type == "cuda" and rt.dtype != torch.float32

    def step() -> None:
        with torch.enable_grad(), torch.autocast(rt.device.type, dtype=rt.dtype, enabled=autocast):
            pred = unet(torch.cat([z_t, mask, z_n], 1), t, encoder_hidden_states=ctx, added_cond_kwargs=added).sample
            loss, _ = inpainting_loss(pred.float(), noise, z_t, z_n, mask, acp[t], 1.0, 5.0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    m = measure_training(step, items=batch, device=rt.device, repeats=repeats)
    out["finetune_step_samples_per_s"] = m.items_per_s
    out["finetune_step_median_s"] = m.median_s
    out["finetune_step_peak_mem_mb"] = m.peak_mem_mb
    out["finetune_unet_params_m"] = sum(p.numel() for p in unet.parameters()) / 1e6


PARTS = ("vae", "generate", "validator", "segmenter", "finetune")


def measure_profile(size: str, image_size: int, batch: int, dtype: str, steps: int, iterative_steps: int,
                    repeats: int = 3, device: str = "auto", finetune: bool = True,
                    parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """The measurements of the benchmark stage (same functions) named in `parts` on `size`
    models; flat dict."""
    from diffaug.benchmark.config import BenchmarkConfig
    from diffaug.benchmark.measure import device_name, module_bytes
    from diffaug.benchmark.suite import bench_generate_and_gate, bench_segmenter, bench_validator, bench_vae
    from diffaug.config import BaseConfig
    from diffaug.validator.config import GateConfig
    from diffaug.runtime import resolve_runtime

    rt = resolve_runtime(BaseConfig(device=device, dtype=dtype))
    cfg = BenchmarkConfig(batch_size=batch, warmup=1, repeats=repeats, min_time_s=0.0, generate_steps=steps,
                          iterative_steps=iterative_steps)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    gen = build_generator(size, rt.device, rt.dtype, image_size)
    validator = build_validator(size, gen.vae, rt.device, rt.dtype)
    segmenter = build_segmenter(size, image_size, rt.device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8)
    masks = np.zeros((batch, image_size, image_size), dtype=bool)
    masks[:, image_size // 4: image_size // 2, image_size // 4: image_size // 2] = True
    prompts = ["sessile polyp , smooth surface , visible capillary pattern"] * batch
    out: dict[str, Any] = {
        "size": size, "weights": "random (architecture-size measurement)", "device": device_name(rt.device),
        "dtype": dtype if rt.device.type == "cuda" else "float32", "torch_version": torch.__version__,
        "image_size": image_size, "batch_size": batch,
        "generator_weights_mb": module_bytes(gen.vae, gen.unet) / 2**20,
        "text_encoder_weights_mb": module_bytes(*gen.text.encoders) / 2**20,
        "validator_weights_mb": module_bytes(validator.net) / 2**20,
        "segmenter_weights_mb": module_bytes(segmenter.net) / 2**20,
    }
    if "vae" in parts:
        bench_vae(gen.vae, images, cfg, rt, out)
    if "generate" in parts:
        bench_generate_and_gate(gen, validator, images, masks, prompts, "healthy mucosa , normal colon tissue",
                                "ddim", images, masks.astype(np.uint8), GateConfig(batch_size=batch), cfg, rt, out)
    if "validator" in parts:
        bench_validator(validator, images, cfg, rt, out)
    if "segmenter" in parts:
        bench_segmenter(segmenter, images, masks, cfg, rt, out)
    if finetune and "finetune" in parts:
        bench_finetune_step(gen, batch, image_size, rt, repeats, out)  # its fp32 copy is freed on return
    if rt.device.type == "cuda":
        out["cuda_max_allocated_total_mb"] = torch.cuda.max_memory_allocated(rt.device) / 2**20
    out["seconds"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="sd2")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dtype", nargs="+", default=["bfloat16"], choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--steps", type=int, default=50, help="generation denoising steps (paper: 50)")
    parser.add_argument("--iterative-steps", type=int, default=50, help="validator iterative baseline T")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-finetune", action="store_true", help="skip the fine-tuning step measurement")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS, help="what to measure (default: all)")
    parser.add_argument("--out", default="", help="JSON file for the results (one entry per dtype)")
    args = parser.parse_args(argv)
    results = {}
    for dtype in args.dtype:
        results[dtype] = measure_profile(args.size, args.image_size, args.batch, dtype, args.steps, args.iterative_steps,
                                         args.repeats, finetune=not args.no_finetune, parts=tuple(args.parts))
        print(json.dumps({dtype: results[dtype]}, indent=1), flush=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
