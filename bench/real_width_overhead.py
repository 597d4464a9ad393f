"""What the steer costs per sampling step beside a REAL-size step (issue 14, "Overhead at real widths").

Per-step ratios on tiny models (bench/sampling_overhead.py) overstate what a fixed per-step cost
means. Here each family's diffusion model is built from ComfyUI's own classes
(``comfy.supported_models.<Family>(real unet_config).get_model``) at its REAL widths, on the meta
device, cut to one block of each kind (UNets: every ResBlock; SDXL one transformer block per level
instead of 2 / 10, SD1.5 whole),
then materialised on the CPU with every parameter initialised here (ComfyUI allocates with
torch.empty): fan-in scaled normals, norm scales 1, biases 0.

Timing (torch CPU, float32, ``threads`` threads, medians of ``repeats`` after a warm-up (a forward
over 5 s is its own warm-up and counts as the first repeat); process CPU time and wall time both):

- the cut model's forward at real width and real text length, with forward hooks timing each
  kept block; the rest of the forward is the model's non-block overhead. The image/video token
  count is cut (each family's ``latent``: 256 tokens on DiTs, a 32x32 latent on UNets; a real
  1024x1024 Flux double block alone is ~1.6 TFLOP, 15-30 s on two cores); the full real step is then estimated as
  ``batch x (overhead x image_ratio + sum_kinds(real_count x block_ms) x sequence_ratio)``, scaling
  linearly from the timed to the real token count. Attention grows faster than linearly, so this
  is a LOWER bound on the real step and the fractions below are upper bounds (the one part it
  over-scales, cross-attention's text-side K/V projections, is smaller than the attention it leaves
  out at every real size here).
- Apply Safety Steer (Model): the node's own ``TextStreamSteer`` (default mode add, no gate: a
  cached vector, ``addcmul`` on the [batch, text tokens, width] context) at the real text width and
  length; on UNets once plus a cached reuse per further cross-attention block. Also reported: the
  gated path (``steer_hidden`` with a target-projection gate), as ``model_point_gated_ms``.
- Apply SafeDIG: the node's repel hook body (positive rows only under CFG) at two image-stream
  positions, a real-width top-k SAE (expansion 4, k 32, 16 harmful features, biased so EVERY token
  carries a harmful feature: the worst case), timed at up to ``safedig_timed_tokens`` tokens and
  scaled linearly (the SAE's cost is linear in tokens) to the real count.

Fraction = steer per step / estimated full real step. Goals (reported, not asserted): model point
<= 0.02 of a step (1.02x), SafeDIG <= 0.05 (1.05x).
"""

from __future__ import annotations

import copy
import gc
import json
import math
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

GOALS = {"model_point_fraction": 0.02, "safedig_fraction": 0.05}
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "real_width_overhead.json"
#: a long real prompt, in encoder tokens (LLM encoders: the user's tokens plus the template the
#: family keeps in the conditioning)
PROMPT_TOKENS = 77
#: a forward longer than this (wall seconds) is its own warm-up: it counts as the first repeat
HEAVY_FORWARD_S = 5.0

_SD15 = {
    "use_checkpoint": False,
    "image_size": 32,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "adm_in_channels": None,
    "in_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "channel_mult": [1, 2, 4, 4],
    "transformer_depth_middle": 1,
    "use_linear_in_transformer": False,
    "context_dim": 768,
    "num_heads": 8,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_temporal_resblock": False,
    "use_temporal_attention": False,
}
#: SDXL base, transformer depths cut to 1 per level (real: [0,0,2,2,10,10], middle 10)
_SDXL_CUT = {
    "use_checkpoint": False,
    "image_size": 32,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "num_classes": "sequential",
    "adm_in_channels": 2816,
    "in_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [2, 2, 2],
    "transformer_depth": [0, 0, 1, 1, 1, 1],
    "channel_mult": [1, 2, 4],
    "transformer_depth_middle": 1,
    "use_linear_in_transformer": True,
    "context_dim": 2048,
    "num_head_channels": 64,
    "transformer_depth_output": [0, 0, 0, 1, 1, 1, 1, 1, 1],
    "use_temporal_resblock": False,
    "use_temporal_attention": False,
}


def _wan(dim, ffn, heads, layers, channels):
    return {
        "image_model": "wan2.1",
        "model_type": "t2v",
        "dim": dim,
        "out_dim": channels,
        "num_heads": heads,
        "ffn_dim": ffn,
        "num_layers": layers,
        "patch_size": (1, 2, 2),
        "freq_dim": 256,
        "window_size": (-1, -1),
        "qk_norm": True,
        "cross_attn_norm": True,
        "eps": 1e-6,
        "in_dim": channels,
        "text_dim": 4096,
    }


_FLUX_LIKE = {"mlp_ratio": 4.0, "qkv_bias": True, "guidance_embed": True, "in_channels": 16, "out_channels": 16}

#: family -> how to build, cut, feed and count it. tokens: real image/video tokens (what the real
#: step sees), timed image tokens (what the cut model is run at), text tokens; joint: the text
#: tokens share the blocks' sequence (MMDiT / single stream) rather than being cross-attended.
FAMILIES: dict[str, dict] = {
    "sd15": {
        "label": "SD1.5 (512x512)",
        "supported": "SD15",
        "config": _SD15,
        "unet": True,
        "real_transformer_blocks": {320: 5, 640: 5, 1280: 6},
        "latent": (4, 32, 32),  # timed; real 64x64
        "real_image_tokens": 64 * 64,
        "text": (77, 768),
        "batch": 2,
        "joint": False,
    },
    "sdxl": {
        "label": "SDXL base (1024x1024)",
        "supported": "SDXL",
        "config": _SDXL_CUT,
        "unet": True,
        "real_transformer_blocks": {640: 10, 1280: 60},
        "latent": (4, 32, 32),  # timed; real 128x128
        "real_image_tokens": 128 * 128,
        "text": (77, 2048),
        "extra": lambda b: {"y": torch.randn(b, 2816)},
        "batch": 2,
        "joint": False,
    },
    "sd3": {
        "label": "SD3.5 Medium (1024x1024)",
        "supported": "SD3",
        "config": {
            "in_channels": 16,
            "out_channels": 16,
            "patch_size": 2,
            "depth": 24,
            "input_size": None,
            "adm_in_channels": 2048,
            "context_embedder_config": {
                "target": "torch.nn.Linear",
                "params": {"in_features": 4096, "out_features": 1536},
            },
            "num_patches": 384 * 384,
            "pos_embed_max_size": 384,
            "pos_embed_scaling_factor": None,
            "qk_norm": "rms",
            "x_block_self_attn_layers": list(range(13)),
        },
        # block 0: with the x-block's second self-attention (layers 0-12); 13: plain; 23: the last
        # (its context block is pre_only)
        "keep": {"joint_blocks": {0: 13, 13: 10, 23: 1}},
        "latent": (16, 32, 32),
        "real_image_tokens": 64 * 64,
        "text": (154, 4096),  # CLIP-L+G (77, padded to 4096) + T5 (77)
        "extra": lambda b: {"y": torch.randn(b, 2048)},
        "batch": 2,
        "joint": True,
        "safedig_width": 1536,
    },
    "flux": {
        "label": "Flux.1 dev (1024x1024)",
        "supported": "Flux",
        "config": {
            "image_model": "flux",
            **_FLUX_LIKE,
            "vec_in_dim": 768,
            "context_in_dim": 4096,
            "hidden_size": 3072,
            "num_heads": 24,
            "depth": 19,
            "depth_single_blocks": 38,
            "axes_dim": [16, 56, 56],
            "theta": 10000,
            "patch_size": 2,
        },
        "keep": {"double_blocks": {0: 19}, "single_blocks": {0: 38}},
        "latent": (16, 32, 32),
        "real_image_tokens": 64 * 64,
        "text": (512, 4096),  # T5-XXL
        "extra": lambda b: {"y": torch.randn(b, 768), "guidance": torch.full((b,), 3.5)},
        "batch": 1,  # guidance-distilled: cfg 1, no negative batch
        "joint": True,
        "safedig_width": 3072,
        "safedig_joint": True,  # single-block positions carry text + image
    },
    "chroma": {
        "label": "Chroma1-HD (1024x1024)",
        "supported": "Chroma",
        "config": {
            "image_model": "chroma",
            "in_channels": 64,
            "out_channels": 64,
            "context_in_dim": 4096,
            "hidden_size": 3072,
            "mlp_ratio": 4.0,
            "num_heads": 24,
            "depth": 19,
            "depth_single_blocks": 38,
            "axes_dim": [16, 56, 56],
            "theta": 10000,
            "patch_size": 2,
            "qkv_bias": True,
            "in_dim": 64,
            "out_dim": 3072,
            "hidden_dim": 5120,
            "n_layers": 5,
        },
        "keep": {"double_blocks": {0: 19}, "single_blocks": {0: 38}},
        "latent": (16, 32, 32),
        "real_image_tokens": 64 * 64,
        "text": (PROMPT_TOKENS + 1, 4096),  # T5-XXL through PixArt's tokenizer: no padding, the end token
        "extra": lambda b: {"guidance": torch.zeros(b)},
        "batch": 2,  # real CFG
        "joint": True,
        "safedig_width": 3072,
        "safedig_joint": True,
    },
    # FLUX.2 [dev] (32B): ComfyUI's detection (comfy/model_detection.py, "flux2") fixes 48 heads, rope axes
    # [32, 32, 32, 32], mlp ratio 3, theta 2000, 128 latent channels at patch 1, global modulation, no
    # biases, no vector input; the file gives the width 6144, the text width 15360 (Mistral 3 Small's
    # hidden states 10/20/30, 3 x 5120) and 8 double + 48 single blocks.
    "flux2": {
        "label": "FLUX.2 dev (1024x1024)",
        "supported": "Flux2",
        "config": {
            "image_model": "flux2",
            "in_channels": 128,
            "out_channels": 128,
            "vec_in_dim": None,
            "context_in_dim": 15360,
            "hidden_size": 6144,
            "mlp_ratio": 3.0,
            "num_heads": 48,
            "depth": 8,
            "depth_single_blocks": 48,
            "axes_dim": [32, 32, 32, 32],
            "theta": 2000,
            "patch_size": 1,
            "qkv_bias": False,
            "guidance_embed": True,
            "global_modulation": True,
            "mlp_silu_act": True,
            "ops_bias": False,
            "default_ref_method": "index",
            "ref_index_scale": 10.0,
        },
        "keep": {"double_blocks": {0: 8}, "single_blocks": {0: 48}},
        "latent": (128, 16, 16),  # timed at 256 image tokens (patch 1); real 1024x1024: 64x64
        "real_image_tokens": 64 * 64,
        "text": (512, 15360),  # model_base.Flux2 left-pads the Mistral tokens to 512
        "extra": lambda b: {"guidance": torch.full((b,), 4.0)},
        "batch": 1,  # guidance-distilled: cfg 1, no negative batch
        "joint": True,
        "safedig_width": 6144,
        "safedig_joint": True,
    },
    "lumina2": {
        "label": "Lumina Image 2.0 (1024x1024)",
        "supported": "Lumina2",
        "config": {
            "image_model": "lumina2",
            "patch_size": 2,
            "in_channels": 16,
            "dim": 2304,
            "cap_feat_dim": 2304,
            "n_layers": 26,
            "qk_norm": True,
            "n_heads": 24,
            "n_kv_heads": 8,
            "axes_dims": [32, 32, 32],
            "axes_lens": [300, 512, 512],
            "rope_theta": 10000.0,
            "ffn_dim_multiplier": 4.0,
        },
        "keep": {"layers": {0: 26}},
        "latent": (16, 32, 32),
        "real_image_tokens": 64 * 64,
        "text": (PROMPT_TOKENS + 1, 2304),  # Gemma 2 2B: BOS and the prompt, no padding
        "extra_text": lambda t: {"num_tokens": t},
        "batch": 2,  # real CFG
        "joint": True,
    },
    "pixart": {
        "label": "PixArt-Sigma XL (1024x1024)",
        "supported": "PixArtSigma",
        "config": {
            "image_model": "pixart_sigma",
            "num_heads": 16,
            "patch_size": 2,
            "hidden_size": 1152,
            "in_channels": 4,
            "depth": 28,
            "model_max_length": 300,
            "micro_condition": False,
            "caption_channels": 4096,
        },
        "keep": {"blocks": {0: 28}},
        # PixArt's position embedding needs a latent side of at least 40: timed at 64x64 (1024 tokens)
        "latent": (4, 64, 64),
        "real_image_tokens": 64 * 64,
        "text": (PROMPT_TOKENS + 1, 4096),  # T5-XXL through PixArt's tokenizer: no padding
        "batch": 2,
        "joint": False,
    },
    "auraflow": {
        "label": "AuraFlow v0.3 (1024x1024)",
        "supported": "AuraFlow",
        "config": {
            "max_seq": 9216,
            "cond_seq_dim": 2048,
            "n_double_layers": 4,
            "n_layers": 36,
            "dim": 3072,
            "n_heads": 12,
            "patch_size": 2,
            "in_channels": 4,
            "out_channels": 4,
            "global_conddim": 3072,
        },
        "keep": {"double_layers": {0: 4}, "single_layers": {0: 32}},
        "latent": (4, 32, 32),
        "real_image_tokens": 64 * 64,
        "text": (256, 2048),  # Pile-T5-XL, padded to 256 tokens (the model adds 8 register tokens)
        "batch": 2,
        "joint": True,
    },
    "cosmos_predict2": {
        "label": "Cosmos Predict2 2B text-to-image (1024x1024)",
        "supported": "CosmosT2IPredict2",
        "config": {
            "image_model": "cosmos_predict2",
            "max_img_h": 240,
            "max_img_w": 240,
            "max_frames": 128,
            "in_channels": 16,
            "out_channels": 16,
            "patch_spatial": 2,
            "patch_temporal": 1,
            "model_channels": 2048,
            "concat_padding_mask": True,
            "crossattn_emb_channels": 1024,
            "pos_emb_cls": "rope3d",
            "pos_emb_learnable": True,
            "pos_emb_interpolation": "crop",
            "min_fps": 1,
            "max_fps": 30,
            "use_adaln_lora": True,
            "adaln_lora_dim": 256,
            "num_blocks": 28,
            "num_heads": 16,
            "extra_per_block_abs_pos_emb": False,
            "rope_h_extrapolation_ratio": 4.0,
            "rope_w_extrapolation_ratio": 4.0,
            "rope_t_extrapolation_ratio": 1.0,
            "extra_h_extrapolation_ratio": 1.0,
            "extra_w_extrapolation_ratio": 1.0,
            "extra_t_extrapolation_ratio": 1.0,
            "rope_enable_fps_modulation": False,
        },
        "keep": {"blocks": {0: 28}},
        "latent": (16, 1, 32, 32),
        "real_image_tokens": 64 * 64,
        "text": (512, 1024),  # the old T5-XXL (T5 v1.0, 1024 wide), padded to 512
        "batch": 2,
        "joint": False,
    },
    # OmniGen 2: the values ComfyUI 0.3.75's model_detection.py sets for every OmniGen 2 file (it reads
    # none from the file; they are OmniGen2's published transformer config). Text-to-image runs the 2
    # context-refiner layers (text tokens), the 2 noise-refiner layers (image tokens) and the 32 main
    # layers (text + image); the reference-image refiner runs only with reference latents (editing).
    "omnigen2": {
        "label": "OmniGen 2 (1024x1024)",
        "supported": "Omnigen2",
        "config": {
            "image_model": "omnigen2",
            "axes_dim_rope": [40, 40, 40],
            "axes_lens": [1024, 1664, 1664],
            "ffn_dim_multiplier": None,
            "hidden_size": 2520,
            "in_channels": 16,
            "multiple_of": 256,
            "norm_eps": 1e-05,
            "num_attention_heads": 21,
            "num_kv_heads": 7,
            "num_layers": 32,
            "num_refiner_layers": 2,
            "out_channels": None,
            "patch_size": 2,
            "text_feat_dim": 2048,
            "timestep_scale": 1000.0,
        },
        "keep": {"layers": {0: 32}, "noise_refiner": {0: 2}, "context_refiner": {0: 2}},
        "unused": ("ref_image_refiner",),
        "latent": (16, 32, 32),
        "real_image_tokens": 64 * 64,
        # Qwen2.5-VL 3B: the whole chat template (OmniGen 2's system turn, 23 tokens, the user header
        # and the closing <|im_end|>\n: 25 tokens around the prompt)
        "text": (PROMPT_TOKENS + 25, 2048),
        "extra_text": lambda t: {"num_tokens": t},
        "batch": 2,  # real CFG
        "joint": True,
    },
    "wan21_14b": {
        "label": "Wan 2.1 T2V 14B (832x480, 81 frames)",
        "supported": "WAN21_T2V",
        "config": _wan(5120, 13824, 40, 40, 16),
        "keep": {"blocks": {0: 40}},
        "latent": (16, 1, 32, 32),
        "real_image_tokens": 21 * 30 * 52,
        "text": (512, 4096),  # umT5-XXL
        "batch": 2,
        "joint": False,
        "safedig_width": 5120,
    },
    "wan21_1.3b": {
        "label": "Wan 2.1 T2V 1.3B (832x480, 81 frames)",
        "supported": "WAN21_T2V",
        "config": _wan(1536, 8960, 12, 30, 16),
        "keep": {"blocks": {0: 30}},
        "latent": (16, 1, 32, 32),
        "real_image_tokens": 21 * 30 * 52,
        "text": (512, 4096),
        "batch": 2,
        "joint": False,
        "safedig_width": 1536,
    },
    "hunyuan_video": {
        "label": "HunyuanVideo (1280x720, 129 frames)",
        "supported": "HunyuanVideo",
        "config": {
            "image_model": "hunyuan_video",
            **_FLUX_LIKE,
            "patch_size": [1, 2, 2],
            "vec_in_dim": 768,
            "axes_dim": [16, 56, 56],
            "meanflow": False,
            "context_in_dim": 4096,
            "hidden_size": 3072,
            "num_heads": 24,
            "depth": 20,
            "depth_single_blocks": 40,
            "theta": 256,
            "byt5": False,
            "use_cond_type_embedding": False,
            "vision_in_dim": None,
        },
        "keep": {"double_blocks": {0: 20}, "single_blocks": {0: 40}},
        "latent": (16, 1, 32, 32),
        "real_image_tokens": 33 * 45 * 80,
        "text": (PROMPT_TOKENS, 4096),  # Llama: ComfyUI crops the template to the user's tokens
        "extra": lambda b: {"y": torch.randn(b, 768), "guidance": torch.full((b,), 6.0)},
        "batch": 1,  # guidance-distilled
        "joint": True,
    },
    # HunyuanVideo 1.5 720p T2V and HunyuanImage 2.1: ComfyUI's detection (model_detection.py, "hunyuan_video":
    # heads = width // 128, theta 256, mlp 4, rope axes [16, 56, 56] in 3-D / [64, 64] in 2-D) on the widths
    # and depths of the published checkpoints (HunyuanVideo 1.5: 2048 wide, 54 double blocks, no single
    # blocks, patch 1x1x1, 65 input channels, SigLIP 1152 vision input, byT5; HunyuanImage 2.1: 3584 wide,
    # 20 double + 40 single blocks, patch 1x1 on the 64-channel 32x latent, byT5); text: Qwen2.5-VL 7B (3584).
    "hunyuan_video15": {
        "label": "HunyuanVideo 1.5 720p T2V (1280x720, 121 frames)",
        "supported": "HunyuanVideo15",
        "config": {
            "image_model": "hunyuan_video",
            **_FLUX_LIKE,
            "guidance_embed": False,
            "in_channels": 65,
            "out_channels": 32,
            "patch_size": [1, 1, 1],
            "vec_in_dim": None,
            "axes_dim": [16, 56, 56],
            "meanflow": False,
            "context_in_dim": 3584,
            "hidden_size": 2048,
            "num_heads": 16,
            "depth": 54,
            "depth_single_blocks": 0,
            "theta": 256,
            "byt5": True,
            "use_cond_type_embedding": True,
            "vision_in_dim": 1152,
        },
        "keep": {"double_blocks": {0: 54}},
        "latent": (65, 1, 16, 16),  # patch 1x1x1: 256 tokens
        "real_image_tokens": 31 * 45 * 80,
        "text": (PROMPT_TOKENS + 5, 3584),  # Qwen2.5-VL 7B: user tokens + the kept closing template
        "batch": 2,  # CFG 6
        "joint": True,
    },
    "hunyuan_image21": {
        "label": "HunyuanImage 2.1 (2048x2048)",
        "supported": "HunyuanImage21",
        "config": {
            "image_model": "hunyuan_video",
            **_FLUX_LIKE,
            "guidance_embed": False,
            "in_channels": 64,
            "out_channels": 64,
            "patch_size": [1, 1],
            "vec_in_dim": None,
            "axes_dim": [64, 64],
            "meanflow": False,
            "context_in_dim": 3584,
            "hidden_size": 3584,
            "num_heads": 28,
            "depth": 20,
            "depth_single_blocks": 40,
            "theta": 256,
            "byt5": True,
            "use_cond_type_embedding": False,
            "vision_in_dim": None,
        },
        "keep": {"double_blocks": {0: 20}, "single_blocks": {0: 40}},
        "latent": (64, 16, 16),  # patch 1x1: 256 tokens
        "real_image_tokens": 64 * 64,
        "text": (PROMPT_TOKENS + 1, 3584),  # Qwen2.5-VL 7B: user tokens + the closing <|im_end|>
        "batch": 2,  # CFG 3.5
        "joint": True,
    },
    "ltxv": {
        "label": "LTX-Video 2B (768x512, 121 frames)",
        "supported": "LTXV",
        "config": {
            "image_model": "ltxv",
            "in_channels": 128,
            "num_layers": 28,
            "attention_head_dim": 64,
            "num_attention_heads": 32,
            "cross_attention_dim": 2048,
            "caption_channels": 4096,
        },
        "keep": {"transformer_blocks": {0: 28}},
        "latent": (128, 1, 16, 16),
        "real_image_tokens": 16 * 16 * 24,
        "text": (128, 4096),  # T5-XXL, 128 tokens
        "extra": lambda b: {"attention_mask": torch.ones(b, 128), "frame_rate": 25},
        "batch": 2,
        "joint": False,
    },
    "wan22": {
        "label": "Wan 2.2 TI2V 5B (1280x704, 121 frames)",
        "supported": "WAN22_T2V",
        "config": _wan(3072, 14336, 24, 30, 48),
        "keep": {"blocks": {0: 30}},
        "latent": (48, 1, 32, 32),
        "real_image_tokens": 31 * 22 * 40,
        "text": (512, 4096),
        "batch": 2,
        "joint": False,
        "safedig_width": 3072,
    },
    "qwen_image": {
        "label": "Qwen-Image (1328x1328)",
        "supported": "QwenImage",
        "config": {
            "image_model": "qwen_image",
            "in_channels": 64,
            "num_layers": 60,
            "attention_head_dim": 128,
            "num_attention_heads": 24,
            "joint_attention_dim": 3584,
            "axes_dims_rope": [16, 56, 56],
        },
        "keep": {"transformer_blocks": {0: 60}},
        "latent": (16, 1, 32, 32),
        "real_image_tokens": 83 * 83,
        "text": (PROMPT_TOKENS + 5, 3584),  # Qwen2.5-VL 7B: user tokens + the kept closing template
        "batch": 2,
        "joint": True,
        "safedig_width": 3072,
    },
    "z_image": {
        "label": "Z-Image Turbo (1024x1024)",
        "supported": "ZImage",
        "config": {
            "image_model": "lumina2",
            "patch_size": 2,
            "in_channels": 16,
            "dim": 3840,
            "cap_feat_dim": 2560,
            "n_layers": 30,
            "qk_norm": True,
            "n_heads": 30,
            "n_kv_heads": 30,
            "axes_dims": [32, 48, 48],
            "axes_lens": [1536, 512, 512],
            "rope_theta": 256.0,
            "ffn_dim_multiplier": 8.0 / 3.0,
            "z_image_modulation": True,
            "time_scale": 1000.0,
            "pad_tokens_multiple": 32,
        },
        "keep": {"layers": {0: 30}},
        "latent": (16, 32, 32),
        "real_image_tokens": 64 * 64,
        # Qwen3-4B: the whole chat template (<|im_start|>user ... <|im_start|>assistant) is kept
        "text": (PROMPT_TOKENS + 8, 2560),
        "extra_text": lambda t: {"num_tokens": t},
        "batch": 1,  # Turbo: cfg 1
        "joint": True,
    },
}


def _ensure_comfyui() -> None:
    try:
        import comfy.supported_models  # noqa: F401
    except ImportError:
        from ..runtime import start_comfyui_in_process

        start_comfyui_in_process(Path(tempfile.mkdtemp(prefix="safety-steer-bench-")) / "comfyui", custom_nodes=False)


def init_parameters(module: torch.nn.Module, seed: int = 0) -> None:
    """Every parameter and floating buffer: norm scales 1, biases 0, weights N(0, 1/fan_in)."""
    generator = torch.Generator().manual_seed(seed)
    persistent = set(module.state_dict())
    tensors = list(module.named_parameters()) + [
        (n, b) for n, b in module.named_buffers() if n in persistent and b.is_floating_point()
    ]
    with torch.no_grad():
        for name, t in tensors:
            leaf = name.rsplit(".", 1)[-1]
            if ("norm" in name.lower() and leaf in ("weight", "scale")) or leaf in ("gamma",):
                t.fill_(1.0)
            elif leaf in ("bias", "beta") or t.ndim == 0:
                t.zero_()
            else:
                fan_in = max(1, t.numel() // t.shape[0]) if t.ndim > 1 else t.shape[0]
                t.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)


def build_cut_model(spec: dict):
    """(model_base model with the cut diffusion model materialised on the CPU, {kind: {index: real count}})."""
    import comfy.supported_models

    config = getattr(comfy.supported_models, spec["supported"])(copy.deepcopy(spec["config"]))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({}, "", device=torch.device("meta"))
    net = model.diffusion_model
    keep = spec.get("keep", {})
    for attr, indices in keep.items():
        blocks = getattr(net, attr)
        setattr(net, attr, torch.nn.ModuleList([blocks[i] for i in indices]))
    for attr in spec.get("unused", ()):  # block lists this forward never runs (OmniGen 2's reference refiner)
        setattr(net, attr, torch.nn.ModuleList())
    model.to_empty(device="cpu")
    init_parameters(net)
    model.eval()
    return model, net


def _median(values):
    return statistics.median(values) * 1000.0


def _timed(fn, repeats: int) -> tuple[float, float]:
    """(median CPU ms, median wall ms) of ``fn`` over ``repeats`` calls after one warm-up."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return _median(cpu), _median(wall)


class _BlockClock:
    """Forward hooks timing each kept block (CPU and wall), grouped by kind."""

    def __init__(self):
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.handles = []

    def watch(self, module: torch.nn.Module, kind: str) -> None:
        def pre(_m, _args):
            module._clock = (time.process_time(), time.perf_counter())

        def post(_m, _args, _out):
            c0, w0 = module._clock
            self.cpu[kind] = self.cpu.get(kind, 0.0) + time.process_time() - c0
            self.wall[kind] = self.wall.get(kind, 0.0) + time.perf_counter() - w0

        self.handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def reset(self):
        self.cpu, self.wall = {}, {}

    def close(self):
        for h in self.handles:
            h.remove()


def time_model(spec: dict, repeats: int, seed: int = 0) -> dict:
    """Time the cut model's forward at batch 1, per kept block and overall."""
    from comfy.ldm.modules.attention import BasicTransformerBlock

    model, net = build_cut_model(spec)
    params = sum(p.numel() for p in net.parameters())
    clock = _BlockClock()
    real_counts: dict[str, int] = {}
    kept: dict[str, int] = {}
    if spec.get("unet"):
        for module in net.modules():
            if isinstance(module, BasicTransformerBlock):
                width = int(module.norm1.normalized_shape[0])
                kind = f"transformer@{width}"
                clock.watch(module, kind)
                kept[kind] = kept.get(kind, 0) + 1
        real_counts = {f"transformer@{w}": n for w, n in spec["real_transformer_blocks"].items()}
    else:
        for attr, indices in spec["keep"].items():
            for module, (index, count) in zip(getattr(net, attr), indices.items()):
                kind = f"{attr}[{index}]"
                clock.watch(module, kind)
                kept[kind] = 1
                real_counts[kind] = count
    g = torch.Generator().manual_seed(seed)
    text_tokens, text_width = spec["text"]
    x = torch.randn(1, *spec["latent"], generator=g)
    context = torch.randn(1, text_tokens, text_width, generator=g)
    kwargs = dict(spec["extra"](1)) if "extra" in spec else {}
    if "extra_text" in spec:
        kwargs.update(spec["extra_text"](text_tokens))
    timestep = torch.full((1,), 0.5 if spec["supported"] in ("ZImage", "Lumina2", "Omnigen2") else 500.0)
    if spec["supported"] in (
        *("Flux", "Chroma", "Flux2", "HunyuanVideo", "HunyuanVideo15", "HunyuanImage21"),
        *("SD3", "QwenImage", "LTXV", "AuraFlow"),
    ):
        timestep = torch.full((1,), 0.5)  # these take sigma-scaled timesteps; any value runs the same work

    def forward():
        clock.reset()
        with torch.inference_mode():
            net(x, timestep, context, **kwargs)

    cpu_runs, wall_runs, block_cpu, block_wall = [], [], {}, {}
    c_first, w0 = time.process_time(), time.perf_counter()
    forward()  # warm-up, unless one forward is so long that warm-up effects do not matter
    runs = repeats if time.perf_counter() - w0 < HEAVY_FORWARD_S else repeats - 1
    if runs < repeats:  # the first forward counts as a repeat
        cpu_runs.append(time.process_time() - c_first)
        wall_runs.append(time.perf_counter() - w0)
        for kind in kept:
            block_cpu.setdefault(kind, []).append(clock.cpu[kind] / kept[kind])
            block_wall.setdefault(kind, []).append(clock.wall[kind] / kept[kind])
    for _ in range(runs):
        c0, w0 = time.process_time(), time.perf_counter()
        forward()
        cpu_runs.append(time.process_time() - c0)
        wall_runs.append(time.perf_counter() - w0)
        for kind in kept:
            block_cpu.setdefault(kind, []).append(clock.cpu[kind] / kept[kind])
            block_wall.setdefault(kind, []).append(clock.wall[kind] / kept[kind])
    clock.close()
    forward_cpu, forward_wall = _median(cpu_runs), _median(wall_runs)
    blocks = {
        kind: {
            "real": real_counts[kind],
            "cpu_ms": round(_median(block_cpu[kind]), 2),
            "wall_ms": round(_median(block_wall[kind]), 2),
        }
        for kind in kept
    }
    # non-block overhead: the forward minus every kept block (each counted once per run)
    overhead_cpu = forward_cpu - sum(b["cpu_ms"] * kept[k] for k, b in blocks.items())
    overhead_wall = forward_wall - sum(b["wall_ms"] * kept[k] for k, b in blocks.items())
    timed_tokens = _image_tokens(spec)
    return {
        "cut_model_parameters": params,
        "timed_image_tokens": timed_tokens,
        "forward_ms": {"cpu": round(forward_cpu, 2), "wall": round(forward_wall, 2)},
        "blocks": blocks,
        "overhead_ms": {"cpu": round(max(overhead_cpu, 0.0), 2), "wall": round(max(overhead_wall, 0.0), 2)},
    }


def _image_tokens(spec: dict) -> int:
    """Image/video tokens of the timed latent (patch 2x2 on DiTs except the patch 1 of LTXV, HunyuanVideo 1.5,
    HunyuanImage 2.1 and FLUX.2; pixels on UNets)."""
    shape = spec["latent"][1:]
    n = math.prod(shape)
    if spec.get("unet") or spec["supported"] in ("LTXV", "HunyuanVideo15", "HunyuanImage21", "Flux2"):  # patch 1
        return n
    return n // 4


def full_step_ms(spec: dict, timing: dict, clock: str) -> tuple[float, float]:
    """(estimated full real step in ms, block-only part): see the module docstring."""
    text = spec["text"][0]
    timed, real = timing["timed_image_tokens"], spec["real_image_tokens"]
    image_ratio = real / timed
    sequence_ratio = (real + text) / (timed + text) if spec["joint"] else image_ratio
    blocks = sum(b["real"] * b[f"{clock}_ms"] for b in timing["blocks"].values()) * sequence_ratio
    return spec["batch"] * (timing["overhead_ms"][clock] * image_ratio + blocks), spec["batch"] * blocks


def _aligned(width: int, rows: int = 4, seed: int = 0):
    from ..steering.transfer.transport import AlignedDirections

    g = torch.Generator().manual_seed(seed)
    unit = torch.nn.functional.normalize(torch.randn(rows, width, generator=g), dim=1)
    return AlignedDirections(
        names=[f"row{i}" for i in range(rows)],
        unit=unit,
        calibrated=unit * 2.0,
        anchor_projection=torch.tensor([[0.0, 1.0]] * rows),
        target_mean=torch.zeros(width),
        target_std=torch.ones(width),
        anchor_covariance=torch.eye(rows),
        read=unit * 3.0,  # a read row costs what a unit row costs; its values do not matter here
        read_projection=torch.tensor([[0.0, 3.0]] * rows),
        read_covariance=torch.eye(rows) * 9.0,
    )


def time_model_point(spec: dict, repeats: int, calls_per_step: int) -> dict:
    """The node's TextStreamSteer per step (default: add, no gate) and the gated steer_hidden path."""
    from ..nodes.apply.model import TextStreamSteer
    from ..nodes.sampling_window import SigmaWindow
    from ..steering.application.assembled import AdditiveSteer
    from ..steering.application.gating import Gate
    from ..steering.application.report import SamplingLog
    from ..steering.application.steer import steer_hidden

    tokens, width = spec["text"]
    batch = spec["batch"]
    context = torch.randn(batch, tokens, width)
    chunks = [0, 1] if batch == 2 else [0]
    window = SigmaWindow.__new__(SigmaWindow)
    window.start, window.end = 1e9, 0.0
    steer = TextStreamSteer(None, 0, 1.0, "add", None, False, window, SamplingLog())
    # the steer's constant vector, planted (every segment on all rows; SD3's by-row masks are not timed)
    steer._additives[(width, context.dtype, context.device)] = AdditiveSteer(torch.randn(width), [], 0)
    sigma = [1.0]

    def step():
        sigma[0] *= 0.999  # a new step: no reuse of the previous step's result
        s = torch.tensor([sigma[0]] * batch)
        for _ in range(calls_per_step):  # UNets: every cross-attention block calls it; the first computes
            steer(context, chunks, s)

    aligned, gate = _aligned(width), Gate(threshold=-1.0)
    weights = torch.tensor([1.0] + [0.0] * (batch - 1))
    mask = torch.ones(batch, tokens)

    def gated():
        steer_hidden(context, mask, aligned, 1.0, "add", gate, 0, weights, report=False)

    cpu, wall = _timed(step, repeats)
    gcpu, gwall = _timed(gated, repeats)
    return {"cpu": cpu, "wall": wall, "gated_cpu": gcpu, "gated_wall": gwall}


def time_safedig(spec: dict, repeats: int, timed_tokens: int, positions: int = 2, seed: int = 0) -> dict:
    """Apply SafeDIG's repel hook at ``positions`` positions, worst case (every token harmful)."""
    from ..nodes.sampling_window import positive_rows
    from ..steering.safedig.operations import HarmfulFeatures, repel
    from ..steering.safedig.sae import SparseAutoencoder

    d = spec["safedig_width"]
    width, k, n_harmful = 4 * d, 32, 16
    g = torch.Generator().manual_seed(seed)
    sae = SparseAutoencoder(d, width, k)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(width, d, generator=g) / math.sqrt(d))
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(d, width, generator=g), dim=0))
        sae.b_enc[:n_harmful] = 100.0  # worst case: the harmful features are in every token's top k
    sae.eval().requires_grad_(False)
    features = HarmfulFeatures(indices=torch.arange(n_harmful), scores=torch.linspace(2, 1, n_harmful))
    batch = spec["batch"]
    chunks = (0, 1) if batch == 2 else (0,)
    real = spec["real_image_tokens"] + (spec["text"][0] if spec.get("safedig_joint") else 0)
    tokens = min(real, timed_tokens)
    hidden = [torch.randn(batch, tokens, d, generator=g) for _ in range(positions)]

    def hook(tensor):  # the body of SafetySteerApplySafeDIG's hook (window check aside)
        rows = positive_rows(chunks, tensor.shape[0], False, tensor.device)
        if bool(rows.all()):
            return repel(tensor, sae, features, 1.0)
        out = tensor.clone()
        out[rows] = repel(tensor[rows], sae, features, 1.0)
        return out

    def step():
        with torch.inference_mode():
            for h in hidden:
                hook(h)

    cpu, wall = _timed(step, repeats)
    scale = real / tokens
    return {
        "cpu": cpu * scale,
        "wall": wall * scale,
        "timed_tokens": tokens,
        "real_tokens": real,
        "positions": positions,
    }


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def run(
    families=tuple(FAMILIES),
    repeats: int = 3,
    threads: int = 2,
    safedig_timed_tokens: int = 256,
    out: Path | None = RESULTS_PATH,
    log=print,
    merge: bool = False,
) -> dict:
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    _ensure_comfyui()
    started = time.perf_counter()
    results: dict = {"families": {}, "skipped": {}}
    if merge and out is not None and Path(out).exists():  # re-run some families into an earlier run
        earlier = json.loads(Path(out).read_text())
        results["families"] = {k: v for k, v in earlier["families"].items() if k not in families}
        results["skipped"] = {k: v for k, v in earlier.get("skipped", {}).items() if k not in families}
    for name in families:
        spec = FAMILIES[name]
        t0 = time.perf_counter()
        try:
            timing = time_model(spec, repeats)
        except Exception as exc:  # too big for this machine, or this ComfyUI cannot build it: say so, go on
            results["skipped"][name] = f"{type(exc).__name__}: {exc}"[:300]
            log(f"{name}: skipped ({exc})")
            gc.collect()
            continue
        full_cpu, blocks_cpu = full_step_ms(spec, timing, "cpu")
        full_wall, _ = full_step_ms(spec, timing, "wall")
        calls = sum(spec["real_transformer_blocks"].values()) if spec.get("unet") else 1
        point = time_model_point(spec, max(repeats, 15), calls)
        row = {
            "label": spec["label"],
            "real_blocks": sum(b["real"] for b in timing["blocks"].values()),
            "block_ms": round(
                sum(b["real"] * b["cpu_ms"] for b in timing["blocks"].values())
                / sum(b["real"] for b in timing["blocks"].values()),
                2,
            ),
            "blocks": timing["blocks"],
            "overhead_ms": timing["overhead_ms"],
            "forward_ms_timed": timing["forward_ms"],
            "cut_model_parameters": timing["cut_model_parameters"],
            "batch": spec["batch"],
            "full_step_ms_estimate": round(full_cpu, 1),
            "full_step_ms_estimate_wall": round(full_wall, 1),
            "model_point_ms": round(point["cpu"], 4),
            "model_point_ms_wall": round(point["wall"], 4),
            "model_point_fraction": point["cpu"] / full_cpu,
            "model_point_fraction_wall": point["wall"] / full_wall,
            "model_point_gated_ms": round(point["gated_cpu"], 4),
            "model_point_gated_fraction": point["gated_cpu"] / full_cpu,
            "model_point_calls_per_step": calls,
            "safedig_ms": None,
            "safedig_fraction": None,
            "tokens": {
                "real_image": spec["real_image_tokens"],
                "timed_image": timing["timed_image_tokens"],
                "text": spec["text"][0],
            },
            "widths": {"text_context": spec["text"][1]},
        }
        if "safedig_width" in spec:
            sd = time_safedig(spec, repeats, safedig_timed_tokens)
            row.update(
                safedig_ms=round(sd["cpu"], 2),
                safedig_ms_wall=round(sd["wall"], 2),
                safedig_fraction=sd["cpu"] / full_cpu,
                safedig_fraction_wall=sd["wall"] / full_wall,
                safedig_tokens={"timed": sd["timed_tokens"], "real": sd["real_tokens"], "positions": sd["positions"]},
            )
            row["widths"]["hidden"] = spec["safedig_width"]
            row["widths"]["sae"] = 4 * spec["safedig_width"]
        row["seconds"] = round(time.perf_counter() - t0, 1)
        row["peak_rss_gb_so_far"] = round(_peak_rss_gb(), 2)
        for key in ("model_point_fraction", "model_point_fraction_wall", "model_point_gated_fraction"):
            row[key] = float(f"{row[key]:.3g}")
        for key in ("safedig_fraction", "safedig_fraction_wall"):
            if row.get(key) is not None:
                row[key] = float(f"{row[key]:.3g}")
        results["families"][name] = row
        log(format_row(name, row))
        gc.collect()
    fams = results["families"].values()
    results["worst"] = {
        "model_point_fraction": max((r["model_point_fraction"] for r in fams), default=None),
        "model_point_gated_fraction": max((r["model_point_gated_fraction"] for r in fams), default=None),
        "safedig_fraction": max(
            (r["safedig_fraction"] for r in fams if r["safedig_fraction"] is not None), default=None
        ),
    }
    results["goals"] = GOALS
    results["goals_met"] = {
        "model_point_fraction": results["worst"]["model_point_fraction"] is not None
        and results["worst"]["model_point_fraction"] <= GOALS["model_point_fraction"],
        "safedig_fraction": results["worst"]["safedig_fraction"] is not None
        and results["worst"]["safedig_fraction"] <= GOALS["safedig_fraction"],
    }
    results["settings"] = {
        "device": "cpu",
        "dtype": "float32",
        "threads": threads,
        "repeats": repeats,
        "safedig_timed_tokens": safedig_timed_tokens,
        "prompt_tokens_llm": PROMPT_TOKENS,
        "torch": torch.__version__,
    }
    results["method"] = " ".join(" ".join(__doc__.split("\n\n")[1:4]).split())
    results["seconds"] = round(time.perf_counter() - started, 1)  # this invocation (each family: its "seconds")
    results["peak_rss_gb"] = round(_peak_rss_gb(), 2)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=1))
    return results


def format_row(name: str, row: dict) -> str:
    sd = "-" if row["safedig_ms"] is None else f"{row['safedig_ms']:.1f} ms ({row['safedig_fraction']:.2%})"
    return (
        f"{name}: blocks {row['real_blocks']} x {row['block_ms']:.0f} ms, "
        f"step ~{row['full_step_ms_estimate'] / 1000:.1f} s; "
        f"model point {row['model_point_ms']:.3f} ms ({row['model_point_fraction']:.2e}); SafeDIG {sd} "
        f"[{row['seconds']} s, peak RSS {row['peak_rss_gb_so_far']} GB]"
    )


def format_table(results: dict) -> str:
    """Markdown table of the results."""
    lines = [
        "| family | real blocks | block ms (timed tokens) | full step estimate | model point ms | model point fraction "
        "| gated ms | SafeDIG ms | SafeDIG fraction |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["families"].values():
        sd_ms = "n/a" if r["safedig_ms"] is None else f"{r['safedig_ms']:.0f}"
        sd_fr = "n/a" if r["safedig_fraction"] is None else f"{r['safedig_fraction']:.2%}"
        lines.append(
            f"| {r['label']} | {r['real_blocks']} | {r['block_ms']:.0f} ({r['tokens']['timed_image']}) "
            f"| {r['full_step_ms_estimate'] / 1000:.1f} s | {r['model_point_ms']:.3f} "
            f"| {r['model_point_fraction']:.1e} "
            f"| {r['model_point_gated_ms']:.2f} | {sd_ms} | {sd_fr} |"
        )
    for name, why in results.get("skipped", {}).items():
        lines.append(f"| {name} | skipped: {why} | | | | | | | |")
    worst = results["worst"]
    lines.append("")
    lines.append(
        f"Worst model point fraction {worst['model_point_fraction']} (goal <= {GOALS['model_point_fraction']}), "
        f"gated {worst['model_point_gated_fraction']}; worst SafeDIG fraction {worst['safedig_fraction']} "
        f"(goal <= {GOALS['safedig_fraction']}). Process CPU time, {results['settings']['threads']} threads, "
        f"float32; full step = a lower bound (see method), so fractions are upper bounds."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS_PATH))
    parser.add_argument("--merge", action="store_true", help="replace only these families in --out")
    args = parser.parse_args()
    out = Path(args.out) if args.out else None
    print(format_table(run(args.families, args.repeats, args.threads, out=out, merge=args.merge)))
