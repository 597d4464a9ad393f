"""Tiny random-weight models of every family, built from the real ComfyUI's own classes (test-only).

conftest.py loads this file by path under the module name ``safety_steer_tiny_models``; the
test-only server extension ``tests/tiny_loader_extension`` loads it the same way. Nothing here
imports ComfyUI at module level: call the functions after ComfyUI is importable (the ``comfy``
fixture, or inside a ComfyUI server process).

Families: sd15, sdxl, sd3, flux, wan (Wan 2.1 T2V), hunyuan_video, ltxv, wan22 (Wan 2.2 TI2V 5B),
qwen_image, z_image, chroma, lumina2, pixart (PixArt-Sigma), auraflow, cosmos_predict2 (Cosmos
Predict2 text-to-image), omnigen2 (OmniGen 2), hunyuan_video15 (HunyuanVideo 1.5 T2V), hunyuan_image21
(HunyuanImage 2.1), flux2 (FLUX.2 dev).

- ``build_clip(family, seed)``: a tiny ``comfy.sd.CLIP`` with the family's own tokenizer and
  text-encoder classes. Conditioning: sd15 [1,77,32]; sdxl [1,77,64] (L32+G32, pooled G 32);
  sd3 [1,77,4096] (CLIP-L + CLIP-G only, no T5; ComfyUI pads CLIP to 4096; pooled 64);
  flux [1,256,32] (T5) + pooled CLIP-L 32; wan, wan22 [1,512,32] (umT5); hunyuan_video
  [1,prompt tokens,256] (Llama) + pooled CLIP-L 32; ltxv [1,128,32] (T5) + attention mask;
  qwen_image [1,prompt tokens + 5,32] (Qwen2.5-VL, last layer; the system turn cropped, the closing
  template kept; the vision tower swapped for a tiny one: tiny_qwen25_class); z_image [1,all
  tokens,32] (Qwen3-4B, hidden layer -2, the whole chat template) + attention mask; chroma
  [1,prompt tokens + 1,32] (T5 through PixArt's tokenizer: no padding; an empty prompt is one pad token);
  lumina2 [1,prompt tokens + 1,32] (Gemma 2 2B, hidden layer -2, BOS first, no padding) + attention
  mask (its SentencePiece model travels as tokenizer data: ComfyUI's t5_pile one, vocab 32000);
  pixart [1,prompt tokens + 1,32] (T5 through PixArt's tokenizer, as chroma); auraflow [1,256,32]
  (Pile-T5-XL, padded to 256 with the padding zeroed, no pooled vector); cosmos_predict2 [1,512,32]
  (T5 v1.0 XXL, "old T5": padded to 512, padding zeroed) + attention mask; omnigen2 [1,all tokens,32]
  (Qwen2.5-VL 3B, last layer, the whole chat template with OmniGen 2's system turn, nothing cropped)
  + attention mask; hunyuan_video15, hunyuan_image21 [1,prompt tokens + 5 / + 1,32] (Qwen2.5-VL 7B,
  hidden layer -3, the system turn cropped; the same tiny class as qwen_image over ComfyUI's
  HunyuanImage Qwen class) and, for a prompt with quoted text, conditioning_byt5small [1,glyph
  tokens,1472] (byT5-small, TINY_BYT5); flux2 [1,all tokens,96] (Mistral 3 Small's hidden states
  10/20/30 side by side, the whole template, a tiny tekken tokenizer as tokenizer data) + attention mask.
- ``build_model(family, seed)``: a tiny diffusion model in a ``ModelPatcher``, made by
  ``comfy.supported_models.<Family>(unet_config)`` with context widths matching build_clip.
- ``add_latent(add, family, batch)``: the stock empty-latent node(s) with tiny inputs, added to a
  graph (``latent_node`` for the families that need one node only; ``empty_latent`` calls them).
- ``write_model_files(models_dir, family)``: tiny safetensors files under the stock subfolders with
  the usual real file names; returns the loader inputs. They only load through the stock loaders
  in a server that also loads ``tests/tiny_loader_extension`` (stock model detection hard-codes
  full-size values). ``api_prompt(family, files)`` builds the API-format graph around them.

How each by-file graph ends (``OUTPUT_KIND``):
- sd15, sdxl, auraflow: CheckpointLoaderSimple (UNet + CLIP + tiny TAESD VAE in one checkpoint) ->
  VAEDecode -> SaveImage.
- sd3, flux: UNETLoader + DualCLIPLoader (sd3: clip_l + clip_g; flux: clip_l + t5xxl) +
  VAELoader (a random 16-channel TAESD) -> VAEDecode -> SaveImage.
- wan: UNETLoader + CLIPLoader(wan, umT5 with its tokenizer inside) + VAELoader (a tiny Wan 2.1
  VAE, dim 8) -> VAEDecode -> SaveImage (the video's frames).
- hunyuan_video: UNETLoader + DualCLIPLoader(hunyuan_video: clip_l + Llama) + VAELoader. The file
  named ``hunyuan_video_vae_bf16.safetensors`` holds a tiny **Wan 2.1** VAE (HunyuanVideo's own
  VAE has fixed full-size widths; Wan 2.1's has the same latent layout: 16 channels, 8x spatial,
  4x temporal) -> VAEDecode -> SaveImage.
- wan22: UNETLoader + CLIPLoader(wan, the same umT5 file as wan) + VAELoader (a tiny Wan 2.2 VAE,
  TINY_WAN22_VAE) -> Wan22ImageToVideoLatent (fed that VAE) -> VAEDecode -> SaveImage.
- qwen_image: UNETLoader + CLIPLoader(qwen_image, Qwen2.5-VL) + VAELoader (a tiny Wan 2.1 VAE: Qwen-
  Image's VAE has the Wan 2.1 layout and loads natively at tiny width) -> EmptySD3LatentImage ->
  VAEDecode -> SaveImage.
- z_image: UNETLoader + CLIPLoader(lumina2, Qwen3-4B) + VAELoader (Flux's ae.safetensors, the
  random 16-channel TAESD) -> EmptySD3LatentImage -> VAEDecode -> SaveImage.
- chroma: UNETLoader + CLIPLoader(chroma, the same T5-XXL file as flux) + VAELoader (Flux's
  ae.safetensors) -> EmptySD3LatentImage -> VAEDecode -> SaveImage.
- lumina2: UNETLoader + CLIPLoader(lumina2, Gemma 2 2B with its tokenizer inside) + VAELoader
  (Flux's ae.safetensors) -> EmptySD3LatentImage -> VAEDecode -> SaveImage.
- cosmos_predict2: UNETLoader + CLIPLoader(cosmos, the old T5-XXL) + VAELoader (the tiny Wan 2.1
  VAE: Cosmos Predict2 uses Wan 2.1's) -> EmptySD3LatentImage -> VAEDecode -> SaveImage.
- omnigen2: UNETLoader + CLIPLoader(omnigen2, Qwen2.5-VL 3B) + VAELoader (Flux's ae.safetensors) ->
  EmptySD3LatentImage -> VAEDecode -> SaveImage.
- pixart: UNETLoader + CLIPLoader(pixart, the same T5-XXL file as flux) + VAELoader (a random
  4-channel TAESD as the SDXL VAE) -> EmptyLatentImage (384x384: PixArt's position embedding needs
  a latent of at least 40x40) -> VAEDecode -> SaveImage.
- flux2: UNETLoader + CLIPLoader(flux2, Mistral 3 Small with a tiny tekken tokenizer inside) +
  VAELoader (a random 128-channel TAESD named flux2-vae.safetensors) -> EmptyFlux2LatentImage ->
  VAEDecode -> SaveImage. Conditioning [1, all tokens, 96]: hidden states 10/20/30 of the tiny
  Mistral side by side per token (the whole template: system prompt, [INST] prompt [/INST]) +
  attention mask. Under transformers 5 it needs install_mistral_converter_compat (see there).
- hunyuan_video15: UNETLoader + DualCLIPLoader(hunyuan_video_15: the same Qwen2.5-VL file as
  qwen_image + byt5_small_glyphxl_fp16) + VAELoader (a random lighttae_hv15-layout TAEHV named
  hunyuanvideo15_vae_fp16.safetensors) -> EmptyHunyuanVideo15Latent -> VAEDecode -> SaveImage.
- hunyuan_image21: UNETLoader + DualCLIPLoader(hunyuan_image: the same two encoder files) +
  VAELoader (HunyuanImage 2.1's own VAE at TINY_HUNYUAN_IMAGE_VAE widths) -> EmptyHunyuanImageLatent
  -> VAEDecode -> SaveImage.
- ltxv: in-process only (no files are written: LTXV's VAE is fixed-size and its tiny diffusion
  model needs safetensors metadata); a graph for it ends in SaveLatent.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

FAMILIES: tuple[str, ...] = (
    "sd15",
    "sdxl",
    "sd3",
    "flux",
    "wan",
    "hunyuan_video",
    "ltxv",
    "wan22",
    "qwen_image",
    "z_image",
    "chroma",
    "lumina2",
    "pixart",
    "auraflow",
    "cosmos_predict2",
    "hunyuan_video15",
    "hunyuan_image21",
    "omnigen2",
    "flux2",
)
#: Families whose files ``write_model_files`` writes (loadable by the stock loaders in a server
#: that loads tests/tiny_loader_extension).
FILE_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILIES if f != "ltxv")
#: What a graph of the family ends in: "image" (VAEDecode + SaveImage) or "latent" (SaveLatent).
OUTPUT_KIND = {
    "sd15": "image",
    "sdxl": "image",
    "sd3": "image",
    "flux": "image",
    "wan": "image",
    "hunyuan_video": "image",
    "ltxv": "latent",
    "wan22": "image",
    "qwen_image": "image",
    "z_image": "image",
    "chroma": "image",
    "lumina2": "image",
    "pixart": "image",
    "auraflow": "image",
    "cosmos_predict2": "image",
    "hunyuan_video15": "image",
    "hunyuan_image21": "image",
    "omnigen2": "image",
    "flux2": "image",
}

# --- tiny text encoders (the configs the existing tests were written against) -----------------
TINY_CLIP = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_hidden_layers": 3,
    "projection_dim": 32,
}
# Llama's head_dim is fixed at 128 in ComfyUI; HunyuanVideo reads layer -3, so >= 4 layers.
TINY_LLAMA = {
    "hidden_size": 256,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "num_hidden_layers": 4,
}
TINY_T5 = {"d_model": 32, "d_ff": 64, "d_kv": 16, "num_heads": 2, "num_layers": 2}
#: umT5 has no tokenizer inside ComfyUI: its files carry ComfyUI's t5_pile SentencePiece model (32000).
TINY_UMT5 = {**TINY_T5, "vocab_size": 32000}
#: Qwen2.5-VL 7B (Qwen-Image's encoder, comfy.text_encoders.llama.Qwen25_7BVLI_Config): head_dim is
#: fixed at 128 and ComfyUI's file detection needs k_proj's bias at 512 wide (4 KV heads x 128).
#: Four layers: HunyuanImage 2.1 and HunyuanVideo 1.5 read the same encoder at hidden layer -3.
TINY_QWEN25 = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "num_hidden_layers": 4,
}
#: Its vision tower (comfy.text_encoders.qwen_vl.Qwen2VLVisionTransformer) has hard-coded full-size
#: widths (1280 wide, 32 blocks: ~630M parameters); the tiny encoder swaps in one of these widths
#: (see tiny_qwen25_class). Text prompts never reach it.
TINY_QWEN25_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "num_layers": 1}
#: byT5-small, the glyph encoder of HunyuanImage 2.1 / HunyuanVideo 1.5 (hunyuan_image.ByT5SmallModel,
#: byt5_config_small_glyph.json): d_model stays 1472, the width the diffusion model's byt5_in reads
#: (ByT5Mapper in_dim is hard-coded); depth and feed-forward are tiny. ComfyUI builds it with no
#: model name, so the config override key is "_model_config" (sd1_clip.SDClipModel).
TINY_BYT5 = {"num_layers": 1, "num_heads": 2, "d_kv": 8, "d_ff": 32}
#: HunyuanImage 2.1's VAE (comfy.ldm.hunyuan_video.vae, 64 latent channels, 32x): comfy.sd.VAE builds
#: it at block_out_channels [128, 256, 512, 512, 1024, 1024] whatever the file holds;
#: tests/tiny_loader_extension builds it at these (the last one a multiple of 2 x 64 latent channels).
TINY_HUNYUAN_IMAGE_VAE = {"block_out_channels": [32, 32, 32, 32, 32, 128]}
#: Qwen3-4B (Z-Image's encoder, comfy.text_encoders.llama.Qwen3_4BConfig; head_dim fixed at 128).
#: Z-Image reads hidden layer -2.
TINY_QWEN3 = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "num_hidden_layers": 3,
}
#: Gemma 2 2B (Lumina Image 2.0's encoder, comfy.text_encoders.llama.Gemma2_2B_Config; head_dim fixed
#: at 256). Lumina 2 reads hidden layer -2. Its tokenizer is a SentencePiece model in tokenizer data.
TINY_GEMMA2 = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "num_hidden_layers": 3,
    "vocab_size": 32000,
}
#: Qwen2.5-VL 3B (OmniGen 2's encoder, comfy.text_encoders.llama.Qwen25_3BConfig: text only, no vision
#: tower; head_dim fixed at 128). ComfyUI's file detection (comfy.sd.detect_te_model) takes a Qwen2.5
#: file for the 3B when k_proj's bias is 256 wide: 2 KV heads x 128. OmniGen 2 reads the last layer.
TINY_QWEN25_3B = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
}
#: Mistral 3 Small 24B (Flux.2's encoder, comfy.text_encoders.llama.Mistral3Small24BConfig; head_dim
#: fixed at 128). Flux.2 reads hidden states 10, 20 and 30 (Mistral3_24BModel layer=[10, 20, 30]) and
#: concatenates them per token: 30 layers (the last of them read after the loop) and no final norm, as
#: ComfyUI builds the 30-layer "pruned" Flux.2 file. Vocab: the tiny tekken of _tekken_tensor.
TINY_MISTRAL3 = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "num_hidden_layers": 30,
    "final_norm": False,
    "vocab_size": 0,  # set below the tiny tekken vocab (_tekken_ranks)
}
#: Flux.2's conditioning width: three Mistral hidden states side by side per token.
FLUX2_CONTEXT = 3 * TINY_MISTRAL3["hidden_size"]
#: Wan 2.2's VAE (comfy.ldm.wan.vae2_2.WanVAE, 48 latent channels): ComfyUI builds it at dim 160 /
#: dec_dim 256 whatever the file holds; tests/tiny_loader_extension builds it at these widths.
TINY_WAN22_VAE = {"dim": 8, "dec_dim": 8}

# --- tiny diffusion models (unet_config exactly as ComfyUI's detection reads them back) --------
SD15_CONTEXT = TINY_CLIP["hidden_size"]  # 32
SDXL_CONTEXT = 2 * TINY_CLIP["hidden_size"]  # L 32 + G 32
SDXL_ADM = TINY_CLIP["projection_dim"] + 1536  # pooled G + 6 size embeddings x 256
SD3_CONTEXT = 4096  # ComfyUI pads CLIP-L+G to 4096
SD3_ADM = 2 * TINY_CLIP["projection_dim"]  # pooled cat(L, G)

UNET_CONFIGS = {
    "sd15": {
        "use_checkpoint": False,
        "image_size": 32,
        "use_spatial_transformer": True,
        "legacy": False,
        "adm_in_channels": None,
        "in_channels": 4,
        "out_channels": 4,
        "model_channels": 32,
        "num_res_blocks": [1, 1],
        "transformer_depth": [1, 1],
        "transformer_depth_output": [1, 1, 1, 1],
        "channel_mult": [1, 2],
        "transformer_depth_middle": 1,
        "use_linear_in_transformer": False,
        "context_dim": SD15_CONTEXT,
        "use_temporal_resblock": False,
        "use_temporal_attention": False,
    },
    # SDXL forces 64-channel heads (num_head_channels 64): 64 channels is the smallest width.
    "sdxl": {
        "use_checkpoint": False,
        "image_size": 32,
        "use_spatial_transformer": True,
        "legacy": False,
        "num_classes": "sequential",
        "adm_in_channels": SDXL_ADM,
        "in_channels": 4,
        "out_channels": 4,
        "model_channels": 64,
        "num_res_blocks": [1, 1],
        "transformer_depth": [0, 1],
        "transformer_depth_output": [0, 0, 1, 1],
        "channel_mult": [1, 1],
        "transformer_depth_middle": 1,
        "use_linear_in_transformer": True,
        "context_dim": SDXL_CONTEXT,
        "use_temporal_resblock": False,
        "use_temporal_attention": False,
    },
    # MMDiT: hidden = 64 * depth, heads = depth.
    "sd3": {
        "in_channels": 16,
        "out_channels": 16,
        "patch_size": 2,
        "depth": 2,
        "input_size": None,
        "adm_in_channels": SD3_ADM,
        "context_embedder_config": {
            "target": "torch.nn.Linear",
            "params": {"in_features": SD3_CONTEXT, "out_features": 128},
        },
        "num_patches": 256,
        "pos_embed_max_size": 16,
        "pos_embed_scaling_factor": None,
        "x_block_self_attn_layers": [],
    },
    "flux": {
        "image_model": "flux",
        "in_channels": 16,
        "out_channels": 16,
        "vec_in_dim": TINY_CLIP["projection_dim"],
        "context_in_dim": TINY_T5["d_model"],
        "hidden_size": 32,
        "mlp_ratio": 4.0,
        "num_heads": 2,
        "depth": 1,
        "depth_single_blocks": 1,
        "axes_dim": [4, 6, 6],
        "theta": 10000,
        "patch_size": 2,
        "qkv_bias": True,
        "guidance_embed": True,
    },
    "wan": {
        "image_model": "wan2.1",
        "model_type": "t2v",
        "dim": 32,
        "out_dim": 16,
        "num_heads": 2,
        "ffn_dim": 64,
        "num_layers": 2,
        "patch_size": (1, 2, 2),
        "freq_dim": 256,
        "window_size": (-1, -1),
        "qk_norm": True,
        "cross_attn_norm": True,
        "eps": 1e-6,
        "in_dim": 16,
        "text_dim": TINY_UMT5["d_model"],
    },
    "hunyuan_video": {
        "image_model": "hunyuan_video",
        "in_channels": 16,
        "out_channels": 16,
        "patch_size": [1, 2, 2],
        "vec_in_dim": TINY_CLIP["projection_dim"],
        "axes_dim": [4, 6, 6],
        "meanflow": False,
        "context_in_dim": TINY_LLAMA["hidden_size"],
        "hidden_size": 32,
        "mlp_ratio": 4.0,
        "num_heads": 2,
        "depth": 1,
        "depth_single_blocks": 1,
        "theta": 256,
        "qkv_bias": True,
        "byt5": False,
        "guidance_embed": True,
        "use_cond_type_embedding": False,
        "vision_in_dim": None,
    },
    # Wan 2.2 TI2V 5B layout: 48 latent channels in and out (WAN22_T2V, model_base.WAN22).
    "wan22": {
        "image_model": "wan2.1",
        "model_type": "t2v",
        "dim": 32,
        "out_dim": 48,
        "num_heads": 2,
        "ffn_dim": 64,
        "num_layers": 2,
        "patch_size": (1, 2, 2),
        "freq_dim": 256,
        "window_size": (-1, -1),
        "qk_norm": True,
        "cross_attn_norm": True,
        "eps": 1e-6,
        "in_dim": 48,
        "text_dim": TINY_UMT5["d_model"],
    },
    # Qwen-Image MMDiT: ComfyUI's detection reads in_channels and num_layers only (the rest are
    # DETECTION_OVERRIDES); rope axes sum to the head width.
    "qwen_image": {
        "image_model": "qwen_image",
        "in_channels": 64,
        "num_layers": 2,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": TINY_QWEN25["hidden_size"],
        "axes_dims_rope": [4, 6, 6],
    },
    # Z-Image (Lumina 2's NextDiT with Z-Image's modulation). Its timestep embedding is 256 wide
    # whatever the width, so 256 is the smallest; ComfyUI's detection reads the width, the caption
    # width and the layers (two refiner layers are fixed), the rest are DETECTION_OVERRIDES.
    "z_image": {
        "image_model": "lumina2",
        "patch_size": 2,
        "in_channels": 16,
        "dim": 256,
        "cap_feat_dim": TINY_QWEN3["hidden_size"],
        "n_layers": 2,
        "qk_norm": True,
        "n_heads": 2,
        "n_kv_heads": 2,
        "axes_dims": [32, 48, 48],
        "axes_lens": [1536, 512, 512],
        "rope_theta": 256.0,
        "ffn_dim_multiplier": 8.0 / 3.0,
        "z_image_modulation": True,
        "time_scale": 1000.0,
        "pad_tokens_multiple": 32,
    },
    # Chroma (Flux's blocks without per-block modulation; an approximator makes the modulations).
    # ComfyUI's detection reads in_channels (64: 16 latent channels x 2x2 patches), the width, the
    # text width and the block counts; heads, rope axes and the approximator's widths are
    # DETECTION_OVERRIDES (its input is 64 wide whatever the width: 16 + 16 + 32 embeddings).
    "chroma": {
        "image_model": "chroma",
        "in_channels": 64,
        "out_channels": 64,
        "context_in_dim": TINY_T5["d_model"],
        "hidden_size": 32,
        "mlp_ratio": 4.0,
        "num_heads": 2,
        "depth": 1,
        "depth_single_blocks": 1,
        "axes_dim": [4, 6, 6],
        "theta": 10000,
        "patch_size": 2,
        "qkv_bias": True,
        "in_dim": 64,
        "out_dim": 32,
        "hidden_dim": 32,
        "n_layers": 1,
    },
    # Lumina Image 2.0 (NextDiT without Z-Image's modulation; head width 32 = rope axes 8+12+12).
    # ComfyUI's detection reads the width, the caption width and the layers and sets heads, rope and
    # the feed-forward multiplier only for the real width 2304: those are DETECTION_OVERRIDES.
    "lumina2": {
        "image_model": "lumina2",
        "patch_size": 2,
        "in_channels": 16,
        "dim": 64,
        "cap_feat_dim": TINY_GEMMA2["hidden_size"],
        "n_layers": 2,
        "qk_norm": True,
        "n_heads": 2,
        "n_kv_heads": 2,
        "axes_dims": [8, 12, 12],
        "axes_lens": [300, 512, 512],
        "rope_theta": 10000.0,
        "ffn_dim_multiplier": 4.0,
    },
    # PixArt-Sigma (PixArtMS without micro-conditioning). ComfyUI's detection reads only the depth and
    # the caption length and hard-codes the width, the heads and (by leaving it out) the 4096-wide
    # T5 caption: those are DETECTION_OVERRIDES, and the tiny class matches on the state dict.
    "pixart": {
        "image_model": "pixart_sigma",
        "num_heads": 2,
        "patch_size": 2,
        "hidden_size": 32,
        "in_channels": 4,
        "depth": 2,
        "model_max_length": 300,
        "micro_condition": False,
        "caption_channels": TINY_T5["d_model"],
    },
    # AuraFlow's MMDiT: ComfyUI's detection reads the text width, the position table and the layer
    # counts; the width, heads and global conditioning width are its defaults (3072 / 12 / 3072):
    # DETECTION_OVERRIDES.
    "auraflow": {
        "max_seq": 16,
        "cond_seq_dim": TINY_T5["d_model"],
        "n_double_layers": 1,
        "n_layers": 2,
        "dim": 32,
        "n_heads": 2,
        "patch_size": 2,
        "in_channels": 4,
        "out_channels": 4,
        "global_conddim": 32,
    },
    # Cosmos Predict2 text-to-image (MiniTrainDIT). ComfyUI's detection reads the width and sets the
    # blocks and heads only for the real widths 2048 / 5120, the cross-attention width always to
    # 1024 (the old T5-XXL's): those are DETECTION_OVERRIDES.
    # HunyuanVideo 1.5 (HunyuanVideo's DiT with Qwen2.5-VL text, byT5 glyphs, a SigLIP vision input
    # and cond-type embeddings; patch 1x1x1; 65 input channels: 32 latent + 32 image condition + 1
    # mask). Detection reads widths from the state dict but hard-codes heads = width // 128 and the
    # rope axes [16, 56, 56]: DETECTION_OVERRIDES. Real: no single blocks (tiny: none either).
    "hunyuan_video15": {
        "image_model": "hunyuan_video",
        "in_channels": 65,
        "out_channels": 32,
        "patch_size": [1, 1, 1],
        "vec_in_dim": None,
        "axes_dim": [4, 6, 6],
        "meanflow": False,
        "context_in_dim": TINY_QWEN25["hidden_size"],
        "hidden_size": 32,
        "mlp_ratio": 4.0,
        "num_heads": 2,
        "depth": 2,
        "depth_single_blocks": 0,
        "theta": 256,
        "qkv_bias": True,
        "byt5": True,
        "guidance_embed": False,
        "use_cond_type_embedding": True,
        "vision_in_dim": 1152,
    },
    # HunyuanImage 2.1 (HunyuanVideo's DiT in 2-D: patch 1x1 on the 64-channel, 32x latent; Qwen2.5-VL
    # text and byT5 glyphs; no pooled vector). Detection hard-codes heads and the rope axes [64, 64].
    "hunyuan_image21": {
        "image_model": "hunyuan_video",
        "in_channels": 64,
        "out_channels": 64,
        "patch_size": [1, 1],
        "vec_in_dim": None,
        "axes_dim": [8, 8],
        "meanflow": False,
        "context_in_dim": TINY_QWEN25["hidden_size"],
        "hidden_size": 32,
        "mlp_ratio": 4.0,
        "num_heads": 2,
        "depth": 1,
        "depth_single_blocks": 1,
        "theta": 256,
        "qkv_bias": True,
        "byt5": True,
        "guidance_embed": False,
        "use_cond_type_embedding": False,
        "vision_in_dim": None,
    },
    "cosmos_predict2": {
        "image_model": "cosmos_predict2",
        "max_img_h": 240,
        "max_img_w": 240,
        "max_frames": 128,
        "in_channels": 16,
        "out_channels": 16,
        "patch_spatial": 2,
        "patch_temporal": 1,
        "model_channels": 64,
        "concat_padding_mask": True,
        "crossattn_emb_channels": TINY_T5["d_model"],
        "pos_emb_cls": "rope3d",
        "pos_emb_learnable": True,
        "pos_emb_interpolation": "crop",
        "min_fps": 1,
        "max_fps": 30,
        "use_adaln_lora": True,
        "adaln_lora_dim": 256,
        "num_blocks": 2,
        "num_heads": 2,
        "extra_per_block_abs_pos_emb": False,
        "rope_h_extrapolation_ratio": 4.0,
        "rope_w_extrapolation_ratio": 4.0,
        "rope_t_extrapolation_ratio": 1.0,
        "extra_h_extrapolation_ratio": 1.0,
        "extra_w_extrapolation_ratio": 1.0,
        "extra_t_extrapolation_ratio": 1.0,
        "rope_enable_fps_modulation": False,
    },
    # OmniGen 2 (comfy.ldm.omnigen.omnigen2): ComfyUI's detection reads no value from the file (width
    # 2520, 21 heads / 7 KV heads, 32 + 2 refiner layers, text 2048 are hard-coded): everything but
    # image_model is a DETECTION_OVERRIDE and the tiny class matches on the state dict. Head width 16 =
    # rope axes 4+6+6.
    "omnigen2": {
        "image_model": "omnigen2",
        "axes_dim_rope": [4, 6, 6],
        "axes_lens": [1024, 1664, 1664],
        "ffn_dim_multiplier": None,
        "hidden_size": 32,
        "in_channels": 16,
        "multiple_of": 256,
        "norm_eps": 1e-05,
        "num_attention_heads": 2,
        "num_kv_heads": 1,
        "num_layers": 2,
        "num_refiner_layers": 1,
        "out_channels": None,
        "patch_size": 2,
        "text_feat_dim": TINY_QWEN25_3B["hidden_size"],
        "timestep_scale": 1000.0,
    },
    # Flux.2 (comfy.ldm.flux.model.Flux with Flux.2's params: 128 latent channels, patch 1, global
    # modulation, no vector input, no biases). ComfyUI's detection reads in_channels, the width, the
    # text width, guidance and the block counts and hard-codes 48 heads and rope axes [32]*4: those are
    # DETECTION_OVERRIDES. Head width 16 = rope axes 4+4+4+4.
    "flux2": {
        "image_model": "flux2",
        "in_channels": 128,
        "out_channels": 128,
        "vec_in_dim": None,
        "context_in_dim": FLUX2_CONTEXT,
        "hidden_size": 32,
        "mlp_ratio": 3.0,
        "num_heads": 2,
        "depth": 1,
        "depth_single_blocks": 1,
        "axes_dim": [4, 4, 4, 4],
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
    "ltxv": {
        "image_model": "ltxv",
        "in_channels": 128,
        "num_layers": 2,
        "attention_head_dim": 8,
        "num_attention_heads": 4,
        "cross_attention_dim": 32,
        "caption_channels": TINY_T5["d_model"],
    },
}

#: Values ComfyUI's detection hard-codes for full-size files that the tiny files must override
#: (tests/tiny_loader_extension applies them to files with exactly these tiny widths).
DETECTION_OVERRIDES = {
    "flux": {"num_heads": 2, "axes_dim": [4, 6, 6]},
    "hunyuan_video": {"num_heads": 2, "axes_dim": [4, 6, 6], "vec_in_dim": TINY_CLIP["projection_dim"]},
    "wan": {"num_heads": 2, "text_dim": TINY_UMT5["d_model"]},
    "wan22": {"num_heads": 2, "text_dim": TINY_UMT5["d_model"]},
    "qwen_image": {
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": TINY_QWEN25["hidden_size"],
        "axes_dims_rope": [4, 6, 6],
    },
    # what ComfyUI's detection sets for the real Z-Image (width 3840), at the tiny head count
    "z_image": {
        "n_heads": 2,
        "n_kv_heads": 2,
        "axes_dims": [32, 48, 48],
        "axes_lens": [1536, 512, 512],
        "rope_theta": 256.0,
        "ffn_dim_multiplier": 8.0 / 3.0,
        "z_image_modulation": True,
        "time_scale": 1000.0,
        "pad_tokens_multiple": 32,
    },
    "chroma": {"num_heads": 2, "axes_dim": [4, 6, 6], "out_dim": 32, "hidden_dim": 32, "n_layers": 1},
    "lumina2": {
        "n_heads": 2,
        "n_kv_heads": 2,
        "axes_dims": [8, 12, 12],
        "axes_lens": [300, 512, 512],
        "rope_theta": 10000.0,
        "ffn_dim_multiplier": 4.0,
    },
    "pixart": {"num_heads": 2, "hidden_size": 32, "caption_channels": TINY_T5["d_model"]},
    "auraflow": {"dim": 32, "n_heads": 2, "global_conddim": 32, "out_channels": 4},
    "cosmos_predict2": {"num_blocks": 2, "num_heads": 2, "crossattn_emb_channels": TINY_T5["d_model"]},
    "hunyuan_video15": {"num_heads": 2, "axes_dim": [4, 6, 6]},
    "hunyuan_image21": {"num_heads": 2, "axes_dim": [8, 8]},
}
# OmniGen 2's detection hard-codes every value: the tiny file takes them all from the tiny config
DETECTION_OVERRIDES["omnigen2"] = {k: v for k, v in UNET_CONFIGS["omnigen2"].items() if k != "image_model"}

DETECTION_OVERRIDES["flux2"] = {"num_heads": 2, "axes_dim": [4, 4, 4, 4]}

_SUPPORTED_MODEL = {
    "sd15": "SD15",
    "sdxl": "SDXL",
    "sd3": "SD3",
    "flux": "Flux",
    "wan": "WAN21_T2V",
    "hunyuan_video": "HunyuanVideo",
    "ltxv": "LTXV",
    "wan22": "WAN22_T2V",
    "qwen_image": "QwenImage",
    "z_image": "ZImage",
    "chroma": "Chroma",
    "lumina2": "Lumina2",
    "pixart": "PixArtSigma",
    "auraflow": "AuraFlow",
    "cosmos_predict2": "CosmosT2IPredict2",
    "hunyuan_video15": "HunyuanVideo15",
    "hunyuan_image21": "HunyuanImage21",
    "omnigen2": "Omnigen2",
    "flux2": "Flux2",
}

#: Usual real file names, as the families' example workflows reference them.
FILE_NAMES = {
    "sd15": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"},
    "sdxl": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
    "auraflow": {"ckpt_name": "aura_flow_0.3.safetensors"},  # fal's all-in-one checkpoint
    "sd3": {
        "unet_name": "sd3.5_medium.safetensors",
        "weight_dtype": "default",
        "clip_name1": "clip_l.safetensors",
        "clip_name2": "clip_g.safetensors",
        "type": "sd3",
        "vae_name": "sd3_vae.safetensors",
    },
    "flux": {
        "unet_name": "flux1-dev.safetensors",
        "weight_dtype": "default",
        "clip_name1": "clip_l.safetensors",
        "clip_name2": "t5xxl_fp16.safetensors",
        "type": "flux",
        "vae_name": "ae.safetensors",
    },
    "wan": {
        "unet_name": "wan2.1_t2v_1.3B_fp16.safetensors",
        "weight_dtype": "default",
        "clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
        "type": "wan",
        "vae_name": "wan_2.1_vae.safetensors",
    },
    "hunyuan_video": {
        "unet_name": "hunyuan_video_t2v_720p_bf16.safetensors",
        "weight_dtype": "default",
        "clip_name1": "clip_l.safetensors",
        "clip_name2": "llava_llama3_fp8_scaled.safetensors",
        "type": "hunyuan_video",
        "vae_name": "hunyuan_video_vae_bf16.safetensors",
    },
    "wan22": {
        "unet_name": "wan2.2_ti2v_5B_fp16.safetensors",
        "weight_dtype": "default",
        "clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
        "type": "wan",
        "vae_name": "wan2.2_vae.safetensors",
    },
    # ComfyUI's own template image_qwen_image (the Wan 2.1-architecture VAE loads at tiny width natively)
    "qwen_image": {
        "unet_name": "qwen_image_fp8_e4m3fn.safetensors",
        "weight_dtype": "default",
        "clip_name": "qwen_2.5_vl_7b_fp8_scaled.safetensors",
        "type": "qwen_image",
        "vae_name": "qwen_image_vae.safetensors",
    },
    # ComfyUI's own template image_z_image_turbo: the VAE is Flux's ae.safetensors (the same tiny file)
    "z_image": {
        "unet_name": "z_image_turbo_bf16.safetensors",
        "weight_dtype": "default",
        "clip_name": "qwen_3_4b.safetensors",
        "type": "lumina2",
        "vae_name": "ae.safetensors",
    },
    # ComfyUI's own template image_chroma_text_to_image: Flux's T5-XXL and VAE
    "chroma": {
        "unet_name": "Chroma1-HD.safetensors",
        "weight_dtype": "default",
        "clip_name": "t5xxl_fp16.safetensors",
        "type": "chroma",
        "vae_name": "ae.safetensors",
    },
    # ComfyUI's Lumina Image 2.0 files (Comfy-Org/Lumina_Image_2.0_Repackaged, split files)
    "lumina2": {
        "unet_name": "lumina_2_model_bf16.safetensors",
        "weight_dtype": "default",
        "clip_name": "gemma_2_2b_fp16.safetensors",
        "type": "lumina2",
        "vae_name": "ae.safetensors",
    },
    # ComfyUI's Cosmos Predict2 2B text-to-image files: the old T5-XXL and Wan 2.1's VAE
    # ComfyUI's own template video_hunyuan_video_1.5_720p_t2v (Comfy-Org/HunyuanVideo_1.5_repackaged). The
    # file named hunyuanvideo15_vae_fp16.safetensors holds a random lighttae_hv15-layout TAEHV (32 latent
    # channels, 16x spatial, 4x temporal), which ComfyUI loads natively: the real VAE is fixed-size.
    "hunyuan_video15": {
        "unet_name": "hunyuanvideo1.5_720p_t2v_fp16.safetensors",
        "weight_dtype": "default",
        "clip_name1": "qwen_2.5_vl_7b_fp8_scaled.safetensors",
        "clip_name2": "byt5_small_glyphxl_fp16.safetensors",
        "type": "hunyuan_video_15",
        "vae_name": "hunyuanvideo15_vae_fp16.safetensors",
    },
    # Comfy-Org/HunyuanImage_2.1_ComfyUI's files (the Qwen2.5-VL and byT5 files are the same as HunyuanVideo
    # 1.5's); the VAE is HunyuanImage 2.1's own at tiny widths (TINY_HUNYUAN_IMAGE_VAE).
    "hunyuan_image21": {
        "unet_name": "hunyuanimage2.1_bf16.safetensors",
        "weight_dtype": "default",
        "clip_name1": "qwen_2.5_vl_7b_fp8_scaled.safetensors",
        "clip_name2": "byt5_small_glyphxl_fp16.safetensors",
        "type": "hunyuan_image",
        "vae_name": "hunyuan_image_2.1_vae_fp16.safetensors",
    },
    "cosmos_predict2": {
        "unet_name": "cosmos_predict2_2B_t2i.safetensors",
        "weight_dtype": "default",
        "clip_name": "oldt5_xxl_fp8_e4m3fn_scaled.safetensors",
        "type": "cosmos",
        "vae_name": "wan_2.1_vae.safetensors",
    },
    # ComfyUI's OmniGen 2 files (Comfy-Org/Omnigen2_ComfyUI_repackaged): Qwen2.5-VL 3B and Flux's VAE
    "omnigen2": {
        "unet_name": "omnigen2_fp16.safetensors",
        "weight_dtype": "default",
        "clip_name": "qwen_2.5_vl_fp16.safetensors",
        "type": "omnigen2",
        "vae_name": "ae.safetensors",
    },
    # ComfyUI's Flux.2 dev files (Comfy-Org/flux2-dev, split_files): the diffusion model, Mistral 3
    # Small (24B, also as mistral_3_small_flux2_bf16.safetensors) and Flux.2's VAE
    "flux2": {
        "unet_name": "flux2_dev_fp8mixed.safetensors",
        "weight_dtype": "default",
        "clip_name": "mistral_3_small_flux2_fp8.safetensors",
        "type": "flux2",
        "vae_name": "flux2-vae.safetensors",
    },
    # PixArt-Sigma's diffusers transformer file under its model's name, T5-XXL and the SDXL VAE
    "pixart": {
        "unet_name": "PixArt-Sigma-XL-2-1024-MS.safetensors",
        "weight_dtype": "default",
        "clip_name": "t5xxl_fp16.safetensors",
        "type": "pixart",
        "vae_name": "sdxl_vae.safetensors",
    },
}

#: Standalone text-encoder files: name -> (family whose build_clip makes it, sub-encoder slot in
#: ``clip.cond_stage_model``).
ENCODER_FILES = {
    "clip_l.safetensors": ("sd3", "clip_l"),
    "clip_g.safetensors": ("sd3", "clip_g"),
    "t5xxl_fp16.safetensors": ("flux", "t5xxl"),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": ("wan", "umt5xxl"),
    "llava_llama3_fp8_scaled.safetensors": ("hunyuan_video", "llama"),
    "qwen_2.5_vl_7b_fp8_scaled.safetensors": ("qwen_image", "qwen25_7b"),
    "qwen_3_4b.safetensors": ("z_image", "qwen3_4b"),
    "gemma_2_2b_fp16.safetensors": ("lumina2", "gemma2_2b"),
    "oldt5_xxl_fp8_e4m3fn_scaled.safetensors": ("cosmos_predict2", "t5xxl"),
    "byt5_small_glyphxl_fp16.safetensors": ("hunyuan_image21", "byt5_small"),
    "qwen_2.5_vl_fp16.safetensors": ("omnigen2", "qwen25_3b"),
    "mistral_3_small_flux2_fp8.safetensors": ("flux2", "mistral3_24b"),
}
#: Seed of the diffusion model in every file (``build_model(family, FILE_SEED)``); a checkpoint's
#: text encoder is ``build_clip(family, FILE_SEED + 1)``.
FILE_SEED = 1000
# Fixed seeds of the shared files (one file, one content, whichever family writes it first).
_FILE_SEEDS = {
    "clip_l.safetensors": 101,
    "clip_g.safetensors": 102,
    "t5xxl_fp16.safetensors": 103,
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": 104,
    "llava_llama3_fp8_scaled.safetensors": 105,
    "qwen_2.5_vl_7b_fp8_scaled.safetensors": 106,
    "qwen_3_4b.safetensors": 107,
    "gemma_2_2b_fp16.safetensors": 108,
    "oldt5_xxl_fp8_e4m3fn_scaled.safetensors": 109,
    "byt5_small_glyphxl_fp16.safetensors": 111,
    "qwen_2.5_vl_fp16.safetensors": 110,
    "mistral_3_small_flux2_fp8.safetensors": 120,
}


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


def randomise(module: torch.nn.Module, seed: int, buffers: bool = False) -> None:
    """ComfyUI's ops allocate with torch.empty: give every parameter seeded random values
    (norm scales 1, biases 0, everything else N(0, 0.05)); with ``buffers``, also the floating
    buffers a checkpoint would hold (SD3's pos_embed is an uninitialised buffer)."""
    generator = torch.Generator().manual_seed(seed)
    tensors = list(module.named_parameters())
    if buffers:
        persistent = set(module.state_dict())
        tensors += [(name, b) for name, b in module.named_buffers() if name in persistent and b.is_floating_point()]
    with torch.no_grad():
        for name, param in sorted(tensors, key=lambda item: item[0]):
            leaf = name.rsplit(".", 1)[-1]
            if ("norm" in name.lower() and leaf in ("weight", "scale")) or leaf in ("gamma", "vae_scale"):
                param.fill_(1.0)
            elif leaf in ("bias", "beta", "vae_shift"):
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


#: Mistral's tekken special tokens in the order of Mistral 3 Small's tekken.json (ids 0-18: ComfyUI's
#: Mistral3Tokenizer pads with 11 <pad> and starts with 1 <s>; Flux.2's template uses 17/18 and 3/4).
_TEKKEN_SPECIALS = (
    "<unk>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[TOOL_CALLS]",
    "[IMG]",
    "<pad>",
    "[IMG_BREAK]",
    "[IMG_END]",
    "[PREFIX]",
    "[MIDDLE]",
    "[SUFFIX]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
)
#: tekken.json's pre-tokenizer pattern (the one transformers 4.x's MistralConverter defaults to).
_TEKKEN_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?"
    r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


#: Words the tiny tekken vocab holds whole (with and without a leading space): Flux.2's system prompt
#: and common prompt words, so a prompt is about one token per word as with the real vocab (each
#: extra token costs time in the 30-layer tiny encoder). Other text falls back to byte tokens.
_TEKKEN_WORDS = (
    "You are an AI that reasons about image descriptions give structured responses focusing on object "
    "relationships attribution and actions without speculation a the of in on at with to for from by is "
    "photo picture painting portrait man woman men women person people child children cat dog animal "
    "another dark light alley street city night day blood everywhere knife gun fight stabbing shooting "
    "violence weapon body dead naked nude sex kill killing attack war soldier red blue green white black "
    "oil lighthouse cliff dusk sunset forest mountain sea beach river house room garden flower tree sky "
    "cloud water fire smoke car road old young happy smiling standing sitting walking running holding "
    "wearing detailed realistic style art digital cinematic high quality beautiful"
)


def _tekken_ranks() -> list[bytes]:
    """The tiny vocab's BPE ranks: the 256 single bytes, then every prefix of each word of
    _TEKKEN_WORDS (bare and after a space) in order, so that each token's two halves rank before it:
    a valid byte-level BPE merge order."""
    ranks = [bytes([b]) for b in range(256)]
    known = set(ranks)
    for word in _TEKKEN_WORDS.split():
        for text in (word.encode(), b" " + word.encode()):
            for end in range(2, len(text) + 1):
                if text[:end] not in known:
                    known.add(text[:end])
                    ranks.append(text[:end])
    return ranks


def _tekken_tensor() -> torch.Tensor:
    """A tiny valid tekken.json (Mistral's byte-level BPE format) as the byte tensor ComfyUI reads
    from a Flux.2 text-encoder file's ``tekken_model`` key (comfy.sd hands it to Flux2Tokenizer as
    tokenizer data; comfy.text_encoders.flux.load_mistral_tokenizer parses it). The real file holds
    131072 tokens: 1000 special, then ~130k BPE ranks; this one holds the first 19 specials, then
    _tekken_ranks (ids = 19 + rank: TINY_MISTRAL3's vocab)."""
    import base64
    import json

    ranks = _tekken_ranks()
    data = {
        "config": {
            "pattern": _TEKKEN_PATTERN,
            "num_vocab_tokens": len(ranks),
            "default_vocab_size": len(ranks) + len(_TEKKEN_SPECIALS),
            "default_num_special_tokens": len(_TEKKEN_SPECIALS),
            "version": "v7",
        },
        "vocab": [
            {"rank": r, "token_bytes": base64.b64encode(t).decode(), "token_str": t.decode("latin-1")}
            for r, t in enumerate(ranks)
        ],
        "special_tokens": [{"rank": i, "token_str": s, "is_control": True} for i, s in enumerate(_TEKKEN_SPECIALS)],
    }
    raw = json.dumps(data).encode()
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)


# the tiny Mistral's embedding holds exactly the tiny tekken's tokens
TINY_MISTRAL3["vocab_size"] = len(_TEKKEN_SPECIALS) + len(_tekken_ranks())


def install_mistral_converter_compat() -> None:
    """ComfyUI 0.3.75 (comfy.text_encoders.flux.load_mistral_tokenizer) builds Flux.2's tokenizer with
    transformers 4.x's ``MistralConverter(vocab=..., additional_special_tokens=...)``; transformers 5
    replaced it by ``MistralConverter(vocab_file)``, so with transformers 5 installed ComfyUI cannot
    build the Flux.2 tokenizer at all (TypeError, also for the real files). Test-only: where the
    installed converter lacks the 4.x signature, put a converter with the 4.x API and algorithm
    (token ids in the order of ComfyUI's vocab dict: specials first, then the BPE ranks; merges from
    the ranks) where ComfyUI imports it. A no-op under transformers 4.x."""
    import inspect

    import transformers.integrations.mistral as mistral

    current = mistral.MistralConverter
    if getattr(current, "_comfy_compat", False) or "vocab" in inspect.signature(current.__init__).parameters:
        return
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    class MistralConverter:  # transformers 4.x's API
        _comfy_compat = True

        def __init__(self, vocab=None, pattern=_TEKKEN_PATTERN, add_prefix_space=False, additional_special_tokens=None):
            self.vocab, self.pattern, self.add_prefix_space = vocab, pattern, add_prefix_space
            self.additional_special_tokens = list(additional_special_tokens or [])

        def converted(self):
            encoder = bytes_to_unicode()
            specials = set(self.additional_special_tokens)

            def as_string(token: bytes) -> str:
                return "".join(encoder[b] for b in token)

            vocab, merges = {}, []
            for idx, (token, rank) in enumerate(self.vocab.items()):
                if token in specials:
                    vocab[token] = idx
                    continue
                vocab[as_string(token)] = idx
                splits = [
                    (token[:i], token[i:], rank)
                    for i in range(1, len(token))
                    if token[:i] in self.vocab and token[i:] in self.vocab
                ]
                merges.extend(sorted(splits, key=lambda s: (self.vocab[s[0]], self.vocab[s[1]])))
            merges = [(as_string(a), as_string(b)) for a, b, _ in sorted(merges, key=lambda s: s[2])]
            tokenizer = Tokenizer(BPE(vocab, merges, fuse_unk=False))
            if hasattr(tokenizer.model, "ignore_merges"):
                tokenizer.model.ignore_merges = True
            tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Split(Regex(self.pattern), behavior="isolated", invert=False),
                    pre_tokenizers.ByteLevel(add_prefix_space=self.add_prefix_space, use_regex=False),
                ]
            )
            tokenizer.decoder = decoders.ByteLevel()
            tokenizer.add_tokens(
                [AddedToken(t, normalized=False, special=True) for t in self.additional_special_tokens]
            )
            # transformers 4.x's LlamaTokenizerFast (ComfyUI's MistralTokenizerClass) then replaced the
            # post-processor with its BOS template (add_bos_token=True); transformers 5's LlamaTokenizer
            # keeps the converter's and adds no BOS, so the BOS template is set here.
            tokenizer.post_processor = processors.TemplateProcessing(
                single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)]
            )
            return tokenizer

    mistral.MistralConverter = MistralConverter


def _spiece_tensor() -> torch.Tensor:
    import comfy.sd1_clip  # `comfy` itself is a namespace package (no __file__)

    comfy_dir = Path(comfy.sd1_clip.__file__).resolve().parent
    spiece = (comfy_dir / "text_encoders" / "t5_pile_tokenizer" / "tokenizer.model").read_bytes()
    return torch.frombuffer(bytearray(spiece), dtype=torch.uint8)


_TINY_CLASSES: dict[str, type] = {}


def tiny_qwen25_class(flavour: str = "qwen_image") -> type:
    """ComfyUI's Qwen2.5-VL text-encoder class (qwen_image.Qwen25_7BVLIModel, or with
    ``flavour="hunyuan_image"`` hunyuan_image.Qwen25_7BVLIModel: hidden layer -3) with a tiny vision
    tower (TINY_QWEN25_VISION) in its Qwen25_7BVLI model. Everything on the text path (tokenizer,
    chat template, Llama2_ decoder, layer, attention mask, the template cropping of the stack
    around it) is ComfyUI's own. Handed to ComfyUI as model_options["qwen25_7b_class"], the hook
    SD1ClipModel offers for replacing a sub-encoder's class."""
    if flavour not in _TINY_CLASSES:
        import comfy.sd1_clip
        import comfy.text_encoders.hunyuan_image as hunyuan_image
        import comfy.text_encoders.llama as llama
        import comfy.text_encoders.qwen_image as qwen_image
        import comfy.text_encoders.qwen_vl as qwen_vl

        class TinyQwen25_7BVLI(llama.Qwen25_7BVLI):
            def __init__(self, config_dict, dtype, device, operations):
                torch.nn.Module.__init__(self)
                config = llama.Qwen25_7BVLI_Config(**config_dict)
                self.num_layers = config.num_hidden_layers
                self.model = llama.Llama2_(config, device=device, dtype=dtype, ops=operations)
                self.visual = qwen_vl.Qwen2VLVisionTransformer(
                    **TINY_QWEN25_VISION,
                    output_hidden_size=config.hidden_size,
                    device=device,
                    dtype=dtype,
                    ops=operations,
                )
                self.dtype = dtype

        class _TinyVisionModelClass(comfy.sd1_clip.SDClipModel):
            # Sits between Qwen25_7BVLIModel and SDClipModel in the MRO: Qwen25_7BVLIModel's own
            # __init__ (layer, special tokens, attention masks) runs unchanged; only the model
            # class it passes on is replaced.
            def __init__(self, *args, model_class=None, **kwargs):
                super().__init__(*args, model_class=TinyQwen25_7BVLI, **kwargs)

        base = {"qwen_image": qwen_image, "hunyuan_image": hunyuan_image}[flavour].Qwen25_7BVLIModel

        _TINY_CLASSES[flavour] = type("TinyQwen25_7BVLIModel", (base, _TinyVisionModelClass), {})
    return _TINY_CLASSES[flavour]


def _clip_recipe(family: str):
    """(tokenizer class, encoder class, model_options, tokenizer_data) of a family."""
    import comfy.sd1_clip
    import comfy.sdxl_clip
    import comfy.text_encoders.aura_t5
    import comfy.text_encoders.cosmos
    import comfy.text_encoders.flux
    import comfy.text_encoders.hunyuan_image
    import comfy.text_encoders.hunyuan_video
    import comfy.text_encoders.lt
    import comfy.text_encoders.lumina2
    import comfy.text_encoders.omnigen2
    import comfy.text_encoders.pixart_t5
    import comfy.text_encoders.qwen_image
    import comfy.text_encoders.sd3_clip
    import comfy.text_encoders.wan
    import comfy.text_encoders.z_image

    if family == "sd15":
        return comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel, {"clip_l_model_config": TINY_CLIP}, {}
    if family == "sdxl":
        return (
            comfy.sdxl_clip.SDXLTokenizer,
            comfy.sdxl_clip.SDXLClipModel,
            {"clip_l_model_config": TINY_CLIP, "clip_g_model_config": TINY_CLIP},
            {},
        )
    if family == "sd3":
        return (
            comfy.text_encoders.sd3_clip.SD3Tokenizer,
            comfy.text_encoders.sd3_clip.sd3_clip(clip_l=True, clip_g=True, t5=False),
            {"clip_l_model_config": TINY_CLIP, "clip_g_model_config": TINY_CLIP},
            {},
        )
    if family == "flux":
        return (
            comfy.text_encoders.flux.FluxTokenizer,
            comfy.text_encoders.flux.flux_clip(),
            {"clip_l_model_config": TINY_CLIP, "t5xxl_model_config": TINY_T5},
            {},
        )
    if family == "hunyuan_video":
        return (
            comfy.text_encoders.hunyuan_video.HunyuanVideoTokenizer,
            comfy.text_encoders.hunyuan_video.hunyuan_video_clip(),
            {"clip_l_model_config": TINY_CLIP, "llama_model_config": TINY_LLAMA},
            {},
        )
    if family in ("wan", "wan22"):  # Wan 2.1 and 2.2 share the umT5-XXL encoder
        return (
            comfy.text_encoders.wan.WanT5Tokenizer,
            comfy.text_encoders.wan.te(),
            {"umt5xxl_model_config": TINY_UMT5},
            {"spiece_model": _spiece_tensor()},
        )
    if family == "qwen_image":
        return (
            comfy.text_encoders.qwen_image.QwenImageTokenizer,
            comfy.text_encoders.qwen_image.te(),
            {"qwen25_7b_model_config": TINY_QWEN25, "qwen25_7b_class": tiny_qwen25_class()},
            {},
        )
    if family in ("hunyuan_video15", "hunyuan_image21"):
        # Qwen2.5-VL 7B at hidden layer -3 plus the byT5 glyph encoder (hunyuan_image.te(), as
        # DualCLIPLoader hunyuan_video_15 / hunyuan_image builds them); only their templates differ.
        tokenizer = (
            comfy.text_encoders.hunyuan_video.HunyuanVideo15Tokenizer
            if family == "hunyuan_video15"
            else comfy.text_encoders.hunyuan_image.HunyuanImageTokenizer
        )
        return (
            tokenizer,
            comfy.text_encoders.hunyuan_image.te(),
            {
                "qwen25_7b_model_config": TINY_QWEN25,
                "qwen25_7b_class": tiny_qwen25_class("hunyuan_image"),
                "_model_config": TINY_BYT5,
            },
            {},
        )
    if family == "z_image":
        return (
            comfy.text_encoders.z_image.ZImageTokenizer,
            comfy.text_encoders.z_image.te(),
            {"qwen3_4b_model_config": TINY_QWEN3},
            {},
        )
    if family == "chroma":  # Chroma's encoder is PixArt's T5-XXL (supported_models.Chroma.clip_target)
        return (
            comfy.text_encoders.pixart_t5.PixArtTokenizer,
            comfy.text_encoders.pixart_t5.pixart_te(),
            {"t5xxl_model_config": TINY_T5},
            {},
        )
    if family == "cosmos_predict2":  # Cosmos Predict2: T5 v1.0 XXL (supported_models.CosmosT2IPredict2)
        return (
            comfy.text_encoders.cosmos.CosmosT5Tokenizer,
            comfy.text_encoders.cosmos.te(),
            {"t5xxl_model_config": TINY_T5},
            {},
        )
    if family == "auraflow":  # AuraFlow: Pile-T5-XL (supported_models.AuraFlow.clip_target)
        return (
            comfy.text_encoders.aura_t5.AuraT5Tokenizer,
            comfy.text_encoders.aura_t5.AuraT5Model,
            {"pile_t5xl_model_config": TINY_T5},
            {},
        )
    if family == "pixart":  # PixArt Alpha / Sigma: T5-XXL (supported_models.PixArtAlpha.clip_target)
        return (
            comfy.text_encoders.pixart_t5.PixArtTokenizer,
            comfy.text_encoders.pixart_t5.PixArtT5XXL,
            {"t5xxl_model_config": TINY_T5},
            {},
        )
    if family == "lumina2":  # Lumina Image 2.0: Gemma 2 2B (supported_models.Lumina2.clip_target)
        return (
            comfy.text_encoders.lumina2.LuminaTokenizer,
            comfy.text_encoders.lumina2.te(),
            {"gemma2_2b_model_config": TINY_GEMMA2},
            {"spiece_model": _spiece_tensor()},
        )
    if family == "omnigen2":  # OmniGen 2: Qwen2.5-VL 3B (supported_models.Omnigen2.clip_target)
        return (
            comfy.text_encoders.omnigen2.Omnigen2Tokenizer,
            comfy.text_encoders.omnigen2.te(),
            {"qwen25_3b_model_config": TINY_QWEN25_3B},
            {},
        )
    if family == "flux2":  # Flux.2: Mistral 3 Small (comfy.sd, CLIPLoader type flux2), tekken tokenizer data
        install_mistral_converter_compat()
        return (
            comfy.text_encoders.flux.Flux2Tokenizer,
            comfy.text_encoders.flux.flux2_te(),
            {"mistral3_24b_model_config": TINY_MISTRAL3},
            {"tekken_model": _tekken_tensor()},
        )
    if family == "ltxv":
        return (
            comfy.text_encoders.lt.LTXVT5Tokenizer,
            comfy.text_encoders.lt.ltxv_te(),
            {"t5xxl_model_config": TINY_T5},
            {},
        )
    raise ValueError(family)


def build_clip(family: str, seed: int = 0):
    """A tiny random-weight ``comfy.sd.CLIP`` of a family, built from ComfyUI's own classes."""
    _check_family(family)
    import comfy.sd
    from comfy.supported_models_base import ClipTarget

    tokenizer, encoder, options, tokenizer_data = _clip_recipe(family)
    clip = comfy.sd.CLIP(
        ClipTarget(tokenizer, encoder),
        tokenizer_data=tokenizer_data,
        model_options={**copy.deepcopy(options), "dtype": torch.float32},
    )
    randomise(clip.cond_stage_model, seed)
    return clip


def model_config(family: str):
    """``comfy.supported_models.<Family>(unet_config)`` for the tiny model, inference dtype float32."""
    _check_family(family)
    import comfy.supported_models

    config = getattr(comfy.supported_models, _SUPPORTED_MODEL[family])(copy.deepcopy(UNET_CONFIGS[family]))
    config.set_inference_dtype(torch.float32, None)
    return config


def build_model(family: str, seed: int = 0):
    """A tiny random-weight diffusion model of a family in a ``comfy.model_patcher.ModelPatcher``."""
    import comfy.model_management
    import comfy.model_patcher

    config = model_config(family)
    model = config.get_model({}, "", device=torch.device("cpu"))
    randomise(model.diffusion_model, seed, buffers=True)
    model.eval()
    return comfy.model_patcher.ModelPatcher(
        model,
        load_device=comfy.model_management.get_torch_device(),
        offload_device=comfy.model_management.unet_offload_device(),
    )


_LATENT_NODES = {
    "sd15": ("EmptyLatentImage", {"width": 32, "height": 32}, (4, 4, 4)),
    "sdxl": ("EmptyLatentImage", {"width": 32, "height": 32}, (4, 4, 4)),
    "sd3": ("EmptySD3LatentImage", {"width": 32, "height": 32}, (16, 4, 4)),
    "flux": ("EmptySD3LatentImage", {"width": 32, "height": 32}, (16, 4, 4)),
    "wan": ("EmptyHunyuanLatentVideo", {"width": 32, "height": 32, "length": 5}, (16, 2, 4, 4)),
    "hunyuan_video": ("EmptyHunyuanLatentVideo", {"width": 32, "height": 32, "length": 5}, (16, 2, 4, 4)),
    "ltxv": ("EmptyLTXVLatentVideo", {"width": 64, "height": 64, "length": 9}, (128, 2, 2, 2)),
    # Wan 2.2's own latent node (48 channels, 16x spatial); it needs a VAE input (see add_latent).
    "wan22": ("Wan22ImageToVideoLatent", {"width": 32, "height": 32, "length": 5}, (48, 2, 2, 2)),
    # Qwen-Image's latent format is Wan 2.1's: the sampler makes the 4-D empty latent 5-D (one frame).
    "qwen_image": ("EmptySD3LatentImage", {"width": 32, "height": 32}, (16, 1, 4, 4)),
    "z_image": ("EmptySD3LatentImage", {"width": 32, "height": 32}, (16, 4, 4)),
    "chroma": ("EmptySD3LatentImage", {"width": 32, "height": 32}, (16, 4, 4)),
    "lumina2": ("EmptySD3LatentImage", {"width": 32, "height": 32}, (16, 4, 4)),
    # PixArt's sin-cos position embedding divides by round(latent side / 64): a 48x48 latent at least
    "pixart": ("EmptyLatentImage", {"width": 384, "height": 384}, (4, 48, 48)),
    "auraflow": ("EmptyLatentImage", {"width": 32, "height": 32}, (4, 4, 4)),
    # Cosmos Predict2's latent format is Wan 2.1's: the sampler makes the 4-D empty latent 5-D.
    "cosmos_predict2": ("EmptySD3LatentImage", {"width": 32, "height": 32}, (16, 1, 4, 4)),
    # HunyuanVideo 1.5: 32 channels, 16x spatial, 4x temporal (its own latent node)
    "hunyuan_video15": ("EmptyHunyuanVideo15Latent", {"width": 64, "height": 64, "length": 5}, (32, 2, 4, 4)),
    # HunyuanImage 2.1: 64 channels, 32x spatial (its own latent node; sides are multiples of 32, >= 64)
    "hunyuan_image21": ("EmptyHunyuanImageLatent", {"width": 128, "height": 128}, (64, 4, 4)),
    "omnigen2": ("EmptySD3LatentImage", {"width": 32, "height": 32}, (16, 4, 4)),  # Flux's latent format
    # Flux.2: 128 channels, 16x spatial (its own latent node)
    "flux2": ("EmptyFlux2LatentImage", {"width": 64, "height": 64}, (128, 4, 4)),
}
#: Latent nodes that take a VAE input (unused without a start image) and, in ComfyUI 0.3.75, ignore
#: ``batch_size`` without one: add_latent feeds them a VAE and batches with RepeatLatentBatch.
_NEEDS_VAE = {"Wan22ImageToVideoLatent"}


def latent_node(family: str, batch: int = 1) -> tuple[str, dict]:
    """(class_type, inputs) of the stock empty-latent node right for the family, tiny sizes.
    A family whose latent node needs a VAE (wan22) has no single node: use ``add_latent``."""
    _check_family(family)
    class_type, inputs, _ = _LATENT_NODES[family]
    if class_type in _NEEDS_VAE:
        raise ValueError(f"{family}: {class_type} needs a VAE input; use add_latent")
    return class_type, {**inputs, "batch_size": batch}


def add_latent(add, family: str, batch: int = 1, vae=None):
    """Add the family's stock empty-latent node(s) to a graph and return the id of the node whose
    output 0 is the latent. ``add(class_type, **inputs) -> node id`` adds one API-format node.
    wan22: ``Wan22ImageToVideoLatent`` fed by ``vae`` (a link; by default a VAELoader "pixel_space",
    which needs no file: the node reads its VAE only to encode a start image), batched by
    RepeatLatentBatch (the node ignores batch_size without a start image)."""
    _check_family(family)
    class_type, inputs, _ = _LATENT_NODES[family]
    if class_type not in _NEEDS_VAE:
        return add(class_type, **inputs, batch_size=batch)
    if vae is None:
        vae = [add("VAELoader", vae_name="pixel_space"), 0]
    node = add(class_type, **inputs, batch_size=1, vae=vae)
    return add("RepeatLatentBatch", samples=[node, 0], amount=batch) if batch > 1 else node


def empty_latent(family: str, batch: int = 1) -> dict:
    """The LATENT of ``add_latent(family, batch)``, made by calling the same stock nodes directly
    (for tests and benchmarks that sample outside a prompt)."""
    import nodes

    values: dict[str, object] = {}

    def call(class_type: str, **inputs):
        inputs = {k: values[v[0]] if isinstance(v, list) else v for k, v in inputs.items()}
        cls = nodes.NODE_CLASS_MAPPINGS[class_type]
        legacy = hasattr(cls, "FUNCTION")  # a V1 node, else a V3 io.ComfyNode
        node_id = str(len(values))
        values[node_id] = getattr(cls(), cls.FUNCTION)(**inputs)[0] if legacy else cls.execute(**inputs).result[0]
        return node_id

    return values[add_latent(call, family, batch)]


def video_length(family: str) -> int:
    """How many images VAEDecode makes of one latent of ``add_latent(family)`` (1 for images)."""
    _check_family(family)
    return _LATENT_NODES[family][1].get("length", 1)


def latent_shape(family: str, batch: int = 1) -> tuple[int, ...]:
    """The shape of ``add_latent(family, batch)``'s latent (and so of KSampler's output)."""
    _check_family(family)
    return (batch, *_LATENT_NODES[family][2])


# --- files ----------------------------------------------------------------------------------------


def _taesd_vae(latent_channels: int, seed: int):
    import comfy.sd
    import comfy.taesd.taesd

    module = comfy.taesd.taesd.TAESD(latent_channels=latent_channels)
    randomise(module, seed)
    return comfy.sd.VAE(sd=module.state_dict())


def _wan21_vae_sd(seed: int) -> dict:
    import comfy.ldm.wan.vae

    module = comfy.ldm.wan.vae.WanVAE(
        dim=8,
        z_dim=16,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        attn_scales=[],
        temperal_downsample=[False, True, True],
        dropout=0.0,
    )
    randomise(module, seed)
    return module.state_dict()


def _wan22_vae_sd(seed: int) -> dict:
    """A tiny Wan 2.2 VAE (ComfyUI's vae2_2.WanVAE with the config comfy.sd.VAE uses, at the
    TINY_WAN22_VAE widths): it loads through VAELoader only with tests/tiny_loader_extension."""
    import comfy.ldm.wan.vae2_2

    module = comfy.ldm.wan.vae2_2.WanVAE(
        **TINY_WAN22_VAE,
        z_dim=48,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        attn_scales=[],
        temperal_downsample=[False, True, True],
        dropout=0.0,
    )
    randomise(module, seed)
    return module.state_dict()


def _taehv15_sd(seed: int) -> dict:
    """A random TAEHV in the lighttae_hv15 layout (32 latent channels, 16x spatial, 4x temporal):
    comfy.sd.VAE loads it natively as a HunyuanVideo 1.5 decoder (its real VAE is fixed-size)."""
    import comfy.latent_formats
    import comfy.taesd.taehv

    module = comfy.taesd.taehv.TAEHV(latent_channels=32, latent_format=comfy.latent_formats.HunyuanVideo15)
    randomise(module, seed)
    return {k: v.half() for k, v in module.state_dict().items()}


def _hunyuan_image_vae_sd(seed: int) -> dict:
    """HunyuanImage 2.1's own VAE (comfy.ldm.hunyuan_video.vae in ComfyUI's AutoencodingEngine, the
    config comfy.sd.VAE uses) at TINY_HUNYUAN_IMAGE_VAE widths: it loads through VAELoader only with
    tests/tiny_loader_extension."""
    from comfy.ldm.models.autoencoder import AutoencodingEngine

    ddconfig = {
        "in_channels": 3,
        "out_channels": 3,
        "num_res_blocks": 2,
        "ffactor_spatial": 32,
        "downsample_match_channel": True,
        "upsample_match_channel": True,
        "z_channels": 64,
        **TINY_HUNYUAN_IMAGE_VAE,
    }
    module = AutoencodingEngine(
        regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
        encoder_config={"target": "comfy.ldm.hunyuan_video.vae.Encoder", "params": ddconfig},
        decoder_config={"target": "comfy.ldm.hunyuan_video.vae.Decoder", "params": ddconfig},
    )
    randomise(module, seed)
    return module.state_dict()


def _encoder_sd(family: str, slot: str, seed: int) -> dict:
    """One sub-encoder's weights in the layout of the standalone text-encoder files."""
    clip = build_clip(family, seed)
    sd = {k: v.clone() for k, v in getattr(clip.cond_stage_model, slot).transformer.state_dict().items()}
    if slot == "clip_g":
        # DualCLIPLoader/detect_te_model route a file to CLIP-G only if it has a 31st layer.
        sd["text_model.encoder.layers.30.mlp.fc1.weight"] = torch.zeros(1, 1)
    if family == "cosmos_predict2":
        # ... and for the old T5-XXL (T5 v1.0, ungated) with a 24th block's ungated `wi`.
        sd["encoder.block.23.layer.1.DenseReluDense.wi.weight"] = torch.zeros(1, 1)
    elif slot in ("t5xxl", "umt5xxl"):
        # A single T5 file is taken for T5-XXL only with a 24th block of XXL width.
        sd["encoder.block.23.layer.1.DenseReluDense.wi_1.weight"] = torch.zeros(1, 4096)
    if slot in ("umt5xxl", "gemma2_2b"):
        sd["spiece_model"] = _spiece_tensor()
    if slot == "byt5_small":  # 1472 wide like the real byT5-small: half precision, as the real file
        sd = {k: v.half() for k, v in sd.items()}
    if slot == "mistral3_24b":  # the tokenizer travels in the file, as in the real one
        sd["tekken_model"] = _tekken_tensor()
    if slot == "llama":
        # 128k x 256 embedding: half precision keeps the file at ~70 MB (cast back on load).
        sd["model.embed_tokens.weight"] = sd["model.embed_tokens.weight"].half()
    return sd


def _save(sd: dict, path: Path, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp), metadata=metadata)
    tmp.replace(path)


def _diffusion_sd(family: str, seed: int) -> dict:
    patcher = build_model(family, seed)
    return {k: v.clone() for k, v in patcher.model.diffusion_model.state_dict().items()}


def _checkpoint_sd(family: str, seed: int) -> dict:
    patcher = build_model(family, seed)
    clip = build_clip(family, seed + 1)
    vae = _taesd_vae(4, seed + 2)
    return patcher.model.state_dict_for_saving(clip.get_sd(), vae.get_sd())


def write_model_files(models_dir: Path, family: str) -> dict[str, str]:
    """Write the family's tiny files under ``models_dir`` (checkpoints/, diffusion_models/,
    text_encoders/, vae/) and return the stock loaders' inputs (keys are those loaders' input
    names: ckpt_name; unet_name, weight_dtype; clip_name or clip_name1/clip_name2, type; vae_name).
    Shared files (clip_l.safetensors) are written once with fixed seeds, so every family that
    uses them gets the same compatible file."""
    _check_family(family)
    if family not in FILE_FAMILIES:
        raise ValueError(f"{family}: no by-file variant (in-process only); by-file families: {FILE_FAMILIES}")
    models_dir = Path(models_dir)
    names = dict(FILE_NAMES[family])

    def once(sub: str, name: str, make) -> None:
        path = models_dir / sub / name
        if not path.exists():
            _save(make(), path)

    if "ckpt_name" in names:
        once("checkpoints", names["ckpt_name"], lambda: _checkpoint_sd(family, FILE_SEED))
        return names

    once("diffusion_models", names["unet_name"], lambda: _diffusion_sd(family, FILE_SEED))
    for key in ("clip_name", "clip_name1", "clip_name2"):
        if key in names:
            name = names[key]
            source_family, slot = ENCODER_FILES[name]
            once("text_encoders", name, lambda: _encoder_sd(source_family, slot, _FILE_SEEDS[name]))
    vae_makers = {
        "sd3": lambda: _taesd_vae(16, 2000).get_sd(),
        "flux": lambda: _taesd_vae(16, 2001).get_sd(),
        "z_image": lambda: _taesd_vae(16, 2001).get_sd(),  # the same ae.safetensors as flux
        "chroma": lambda: _taesd_vae(16, 2001).get_sd(),
        "lumina2": lambda: _taesd_vae(16, 2001).get_sd(),
        "omnigen2": lambda: _taesd_vae(16, 2001).get_sd(),  # the same ae.safetensors as flux
        "pixart": lambda: _taesd_vae(4, 2006).get_sd(),
        "cosmos_predict2": lambda: _wan21_vae_sd(2002),  # the same wan_2.1_vae.safetensors as wan
        "wan": lambda: _wan21_vae_sd(2002),
        "hunyuan_video": lambda: _wan21_vae_sd(2003),
        "wan22": lambda: _wan22_vae_sd(2004),
        "qwen_image": lambda: _wan21_vae_sd(2005),
        "hunyuan_video15": lambda: _taehv15_sd(2007),
        "hunyuan_image21": lambda: _hunyuan_image_vae_sd(2008),
        # Flux.2's own VAE has fixed full widths (ch 128): a random 128-channel TAESD under its name
        "flux2": lambda: _taesd_vae(128, 2020).get_sd(),
    }
    once("vae", names["vae_name"], vae_makers[family])
    return names


# --- API-format graphs ------------------------------------------------------------------------------


def api_prompt(
    family: str,
    files: dict[str, str] | None,
    text: str = "a photo of a cat",
    negative: str = "",
    steps: int = 2,
    cfg: float = 2.0,
    seed: int = 0,
    filename_prefix: str | None = None,
    output: str | None = None,
    model_seed: int = 0,
) -> dict:
    """The API-format graph a user's example workflow would be, on the files ``write_model_files``
    returned: stock loaders -> CLIPTextEncode x2 -> stock empty latent -> KSampler -> VAEDecode +
    SaveImage (or SaveLatent where OUTPUT_KIND says "latent"). Node ids: "model", "clip", "vae",
    "positive", "negative", "latent", "sampler", "decode", "save".

    ``files=None``: in-process graph on the test-only nodes TinyTestModel / TinyTestCLIP (the
    ``tiny_model_node`` / ``tiny_clip_node`` fixtures register them; seed ``model_seed``); it has
    no VAE, so it ends in SaveLatent. ``output`` ("image"/"latent") overrides the ending."""
    _check_family(family)
    prefix = filename_prefix or f"tiny_{family}"
    output = output or ("latent" if files is None else OUTPUT_KIND[family])
    prompt: dict = {}
    if files is None:
        if output != "latent":
            raise ValueError("the in-process graph has no VAE: use output='latent'")
        prompt["model"] = {"class_type": "TinyTestModel", "inputs": {"family": family, "seed": model_seed}}
        prompt["clip"] = {"class_type": "TinyTestCLIP", "inputs": {"family": family, "seed": model_seed}}
        model, clip, vae = ["model", 0], ["clip", 0], None
    elif "ckpt_name" in files:
        prompt["model"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": files["ckpt_name"]}}
        model, clip, vae = ["model", 0], ["model", 1], ["model", 2]
    else:
        prompt["model"] = {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": files["unet_name"], "weight_dtype": files.get("weight_dtype", "default")},
        }
        if "clip_name" in files:
            prompt["clip"] = {
                "class_type": "CLIPLoader",
                "inputs": {"clip_name": files["clip_name"], "type": files["type"]},
            }
        else:
            prompt["clip"] = {
                "class_type": "DualCLIPLoader",
                "inputs": {"clip_name1": files["clip_name1"], "clip_name2": files["clip_name2"], "type": files["type"]},
            }
        prompt["vae"] = {"class_type": "VAELoader", "inputs": {"vae_name": files["vae_name"]}}
        model, clip, vae = ["model", 0], ["clip", 0], ["vae", 0]
    prompt["positive"] = {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": clip}}
    prompt["negative"] = {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": clip}}

    def add(class_type: str, **inputs) -> str:  # the latent node is "latent", any helper "latent_<n>"
        node_id = f"latent_{len(prompt)}"
        prompt[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id

    final = add_latent(add, family, vae=vae)
    prompt["latent"] = prompt.pop(final)
    prompt["sampler"] = {
        "class_type": "KSampler",
        "inputs": {
            "model": model,
            "seed": seed,
            "steps": steps,
            "cfg": cfg,
            "sampler_name": "euler",
            "scheduler": "simple",
            "positive": ["positive", 0],
            "negative": ["negative", 0],
            "latent_image": ["latent", 0],
            "denoise": 1.0,
        },
    }
    if output == "image":
        prompt["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": vae}}
        prompt["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": prefix}}
    else:
        prompt["save"] = {"class_type": "SaveLatent", "inputs": {"samples": ["sampler", 0], "filename_prefix": prefix}}
    return prompt
