"""Tiny random-weight models of every family run through the real ComfyUI: in-process on the
test-only model/CLIP nodes, and by file through the stock loaders in a real server."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TESTS = Path(__file__).resolve().parent


def _tiny_models():
    name = "safety_steer_tiny_models"
    if name not in sys.modules:  # conftest normally loaded it already
        spec = importlib.util.spec_from_file_location(name, TESTS / "tiny_models.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


tm = _tiny_models()


@pytest.mark.parametrize("family", tm.FAMILIES)
def test_real_ksampler_in_process(comfy, tiny_model_node, tiny_clip_node, family):
    """TinyTestModel + TinyTestCLIP -> CLIPTextEncode -> stock empty latent -> real KSampler
    (2 steps, cfg 2 and cfg 1) -> SaveLatent: finite latents of the stock latent's shape."""
    prompt = tm.api_prompt(family, None, steps=2, cfg=2.0, filename_prefix=f"tiny_inproc_{family}_cfg2")
    prompt["sampler_cfg1"] = {**prompt["sampler"], "inputs": {**prompt["sampler"]["inputs"], "cfg": 1.0}}
    prompt["save_cfg1"] = {
        "class_type": "SaveLatent",
        "inputs": {"samples": ["sampler_cfg1", 0], "filename_prefix": f"tiny_inproc_{family}_cfg1"},
    }
    outputs = comfy.run(prompt)
    latents = {}
    for node in ("save", "save_cfg1"):
        (entry,) = outputs[node]["latents"]
        latents[node] = load_file(str(comfy.base / "output" / entry["subfolder"] / entry["filename"]))["latent_tensor"]
    for latent in latents.values():
        assert tuple(latent.shape) == tm.latent_shape(family)
        assert torch.isfinite(latent).all()
        assert latent.abs().sum() > 0
    assert not torch.equal(latents["save"], latents["save_cfg1"])


@pytest.mark.parametrize("family", tm.FAMILIES)
def test_build_model_matches_clip_width(comfy, tiny_model, tiny_clip, family):
    """Every parameter is initialised (no torch.empty garbage) and the conditioning width is the
    model's text context width."""
    patcher = tiny_model(family)
    for name, param in patcher.model.diffusion_model.named_parameters():
        assert torch.isfinite(param).all(), name
        assert param.abs().max() < 10, name
    clip = tiny_clip(family)
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a cat"))[0][0]
    config = tm.UNET_CONFIGS[family]
    width = {
        "sd15": "context_dim",
        "sdxl": "context_dim",
        "flux": "context_in_dim",
        "chroma": "context_in_dim",
        "flux2": "context_in_dim",  # three Mistral hidden states side by side
        "wan": "text_dim",
        "wan22": "text_dim",
        "qwen_image": "joint_attention_dim",
        "z_image": "cap_feat_dim",
        "lumina2": "cap_feat_dim",
        "pixart": "caption_channels",
        "auraflow": "cond_seq_dim",
        "cosmos_predict2": "crossattn_emb_channels",
        "omnigen2": "text_feat_dim",
        "hunyuan_video": "context_in_dim",
        "hunyuan_video15": "context_in_dim",
        "hunyuan_image21": "context_in_dim",
        "ltxv": "caption_channels",
    }.get(family)
    expected = config[width] if width else config["context_embedder_config"]["params"]["in_features"]
    assert cond.shape[-1] == expected


def test_by_file_through_stock_loaders(tiny_model_server):
    """Each by-file family's usual graph (stock loaders -> CLIPTextEncode -> KSampler 2 steps ->
    VAEDecode + SaveImage), posted over HTTP to a real server, completes and saves its output."""
    server = tiny_model_server
    assert set(server.models) == set(tm.FILE_FAMILIES)
    failures = {}
    for family, files in server.models.items():
        prompt = tm.api_prompt(family, files, steps=2, cfg=2.0, filename_prefix=f"tiny_file_{family}")
        entry = server.run_prompt(prompt, timeout=120)
        status = entry.get("status", {})
        if status.get("status_str") != "success":
            failures[family] = [m for m in status.get("messages", []) if m[0] == "execution_error"]
            continue
        saved = entry["outputs"]["save"]["images"]
        frames = tm.video_length(family)
        assert len(saved) == frames, (family, saved)
        for image in saved:
            assert (server.base / "output" / image["subfolder"] / image["filename"]).stat().st_size > 0
    assert not failures, f"{failures}\nlog: {server.log.read_text()[-4000:]}"


def test_loader_patches_leave_full_size_models_alone(comfy):
    """The extension's tiny classes match only tiny widths and its encoder merge fires only on
    tiny embeddings: real-size configs and state dicts keep ComfyUI's own code paths."""
    import comfy.supported_models as sm

    spec = importlib.util.spec_from_file_location("tiny_loader_patches", TESTS / "tiny_loader_extension" / "patches.py")
    patches = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(patches)  # defines classes only; install() is not called here
    classes = patches.tiny_model_classes()

    real = [
        {**sm.SD15.unet_config, "in_channels": 4},
        {**sm.SDXL.unet_config, "in_channels": 4},
        {"image_model": "flux", "guidance_embed": True, "hidden_size": 3072, "in_channels": 16},
        {"image_model": "chroma", "hidden_size": 3072, "in_channels": 64, "context_in_dim": 4096},  # Chroma1-HD
        {"image_model": "hunyuan_video", "hidden_size": 3072, "context_in_dim": 4096},
        # HunyuanVideo 1.5 720p T2V and HunyuanImage 2.1 (ComfyUI's detection on the real files)
        {"image_model": "hunyuan_video", "hidden_size": 2048, "context_in_dim": 3584, "vision_in_dim": 1152},
        {"image_model": "hunyuan_video", "hidden_size": 3584, "context_in_dim": 3584, "vec_in_dim": None},
        {"image_model": "wan2.1", "model_type": "t2v", "dim": 1536, "out_dim": 16},  # Wan 2.1 1.3B
        {"image_model": "wan2.1", "model_type": "t2v", "dim": 5120, "out_dim": 16},  # Wan 2.2 14B T2V
        {"image_model": "wan2.1", "model_type": "t2v", "dim": 3072, "out_dim": 48, "in_dim": 48},  # 2.2 TI2V 5B
        {"image_model": "lumina2", "dim": 3840, "cap_feat_dim": 2560, "n_layers": 30},  # Z-Image
        {"image_model": "lumina2", "dim": 2304, "cap_feat_dim": 2304, "n_layers": 26},  # Lumina Image 2.0
        {"image_model": "cosmos_predict2", "in_channels": 16, "model_channels": 2048},  # Cosmos Predict2 2B
        {"max_seq": 9216, "cond_seq_dim": 2048, "n_double_layers": 4, "n_layers": 36},  # AuraFlow v0.3
        # Flux.2 dev (ComfyUI's detection on the real file: 6144 wide, 3 x 5120 text features)
        {"image_model": "flux2", "hidden_size": 6144, "in_channels": 128, "context_in_dim": 15360},
    ]
    for config in real:
        assert not any(cls.matches(config) for cls in classes), config
    # Qwen-Image's detection gives no width: its tiny class reads txt_in's from the state dict
    qwen = {"image_model": "qwen_image", "in_channels": 64, "num_layers": 60}
    real_qwen = {"txt_in.weight": torch.empty(3072, 3584, device="meta")}
    assert not any(cls.matches(qwen, real_qwen) for cls in classes) and not any(cls.matches(qwen) for cls in classes)
    tiny_width = tm.UNET_CONFIGS["qwen_image"]["joint_attention_dim"]
    tiny_sd = {
        "qwen_image": {"txt_in.weight": torch.empty(32, tiny_width, device="meta")},
        "pixart": {"x_embedder.proj.weight": torch.empty(32, 4, 2, 2, device="meta")},
        "omnigen2": {"x_embedder.weight": torch.empty(32, 64, device="meta")},
    }
    # PixArt's detection gives no width either: its tiny class reads the patch embedding's
    pixart = {"image_model": "pixart_sigma", "depth": 28, "model_max_length": 300, "micro_condition": False}
    real_pixart = {"x_embedder.proj.weight": torch.empty(1152, 4, 2, 2, device="meta")}
    assert not any(cls.matches(pixart, real_pixart) or cls.matches(pixart) for cls in classes)
    # nor does OmniGen 2's (it hard-codes everything): its tiny class reads the patch embedding's width
    omnigen2 = {"image_model": "omnigen2", "hidden_size": 2520, "text_feat_dim": 2048}
    real_omnigen2 = {"x_embedder.weight": torch.empty(2520, 64, device="meta")}
    assert not any(cls.matches(omnigen2, real_omnigen2) or cls.matches(omnigen2) for cls in classes)
    for family, config in tm.UNET_CONFIGS.items():
        matching = [cls for cls in classes if cls.matches(config, tiny_sd.get(family))]
        expected = (
            "sd15",
            "sdxl",
            "flux",
            "hunyuan_video",
            "wan",
            "wan22",
            "qwen_image",
            "z_image",
            "chroma",
            "lumina2",
            "pixart",
            "auraflow",
            "cosmos_predict2",
            "omnigen2",
            "hunyuan_video15",
            "hunyuan_image21",
            "flux2",
        )
        assert len(matching) == (family in expected), family

    meta = {"device": "meta"}
    full_size = [
        {"text_model.embeddings.token_embedding.weight": torch.empty(49408, 768, **meta)},
        {"conditioner.embedders.1.model.token_embedding.weight": torch.empty(49408, 1280, **meta)},
        {"shared.weight": torch.empty(32128, 4096, **meta)},
        {"model.embed_tokens.weight": torch.empty(128320, 4096, **meta)},
        {
            "model.embed_tokens.weight": torch.empty(152064, 3584, **meta),
            "model.layers.0.self_attn.k_proj.bias": torch.empty(512, **meta),
        },
        {"encoder.block.0.layer.1.DenseReluDense.wi_0.weight": torch.empty(3584, 1472, **meta)},  # byT5-small
        {  # Qwen2.5-VL 3B (OmniGen 2)
            "model.embed_tokens.weight": torch.empty(151936, 2048, **meta),
            "model.layers.0.self_attn.k_proj.bias": torch.empty(256, **meta),
        },
        {
            "model.embed_tokens.weight": torch.empty(151936, 2560, **meta),
            "model.layers.0.self_attn.q_norm.weight": torch.empty(128, **meta),
        },
        {
            "model.embed_tokens.weight": torch.empty(256000, 2304, **meta),
            "model.layers.0.post_feedforward_layernorm.weight": torch.empty(2304, **meta),
        },
    ]
    mistral = {  # Mistral 3 Small 24B as Flux.2's file holds it (with its tekken tokenizer)
        "model.embed_tokens.weight": torch.empty(131072, 5120, **meta),
        "model.layers.0.post_attention_layernorm.weight": torch.empty(5120, **meta),
        "tekken_model": torch.empty(16, dtype=torch.uint8, **meta),
    }
    assert patches.tiny_encoder_options([*full_size, mistral]) == {}
    # only a tiny Mistral file is routed to Flux.2's encoder by the extension's detect_te_model
    import comfy.sd

    detect = next(value for _, name, value in patches.patched_attributes() if name == "detect_te_model")
    assert detect(mistral) == comfy.sd.detect_te_model(mistral) == comfy.sd.TEModel.MISTRAL3_24B_PRUNED_FLUX2
    tiny_mistral = {**mistral, "model.layers.0.post_attention_layernorm.weight": torch.empty(32, **meta)}
    assert comfy.sd.detect_te_model(tiny_mistral) == comfy.sd.TEModel.LLAMA3_8  # stock: taken for Llama 3
    assert detect(tiny_mistral) == comfy.sd.TEModel.MISTRAL3_24B_PRUNED_FLUX2
    tiny = {"text_model.embeddings.token_embedding.weight": torch.empty(49408, 32, **meta)}
    assert patches.tiny_encoder_options([tiny])["clip_l_model_config"] == tm.TINY_CLIP
    merged = patches.deep_merge(
        {"clip_l_model_config": {"max_position_embeddings": 77}}, patches.tiny_encoder_options([tiny])
    )
    assert merged["clip_l_model_config"] == {"max_position_embeddings": 77, **tm.TINY_CLIP}


def _load_patches():
    spec = importlib.util.spec_from_file_location("tiny_loader_patches", TESTS / "tiny_loader_extension" / "patches.py")
    patches = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(patches)
    return patches


def _assert_same(loaded: dict, expected: dict, what: str) -> None:
    """Every tensor of ``loaded`` came from ``expected`` (text encoders may run in half precision)."""
    missing = sorted(set(loaded) - set(expected))
    assert not missing, f"{what}: not in the file: {missing[:5]}"
    for key, value in loaded.items():
        torch.testing.assert_close(
            value.float(), expected[key].float(), atol=2e-3, rtol=2e-3, msg=lambda m, key=key: f"{what} {key}: {m}"
        )


def test_tiny_files_load_exactly_what_was_written(tiny_model_server, monkeypatch):
    """With the extension's patches (applied in-process here with monkeypatch), the loader calls
    of the stock nodes give back exactly the written weights: no parameter left as torch.empty
    garbage, CLIP-G routed to clip_g, T5/umT5/Llama at their tiny widths."""
    import comfy.sd
    import comfy.utils

    for target, attribute, value in _load_patches().patched_attributes():
        monkeypatch.setattr(target, attribute, value)
    models = tiny_model_server.base / "models"
    for family, files in tiny_model_server.models.items():
        if "ckpt_name" in files:
            model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(
                str(models / "checkpoints" / files["ckpt_name"]), output_vae=True, output_clip=True
            )
            # The checkpoint format (ComfyUI's own saving code) drops CLIP-L's projection and logit
            # scale: stock ComfyUI leaves those two unloaded for real SD1.5/SDXL checkpoints too.
            dropped = ("clip_l.transformer.text_projection.weight", "clip_l.logit_scale", "clip_g.logit_scale")
            loaded = {k: v for k, v in clip.cond_stage_model.state_dict().items() if k not in dropped}
            _assert_same(
                loaded, tm.build_clip(family, tm.FILE_SEED + 1).cond_stage_model.state_dict(), f"{family} clip"
            )
            assert vae.latent_channels == 4
        else:
            model = comfy.sd.load_diffusion_model(str(models / "diffusion_models" / files["unet_name"]))
            names = [files[k] for k in ("clip_name", "clip_name1", "clip_name2") if k in files]
            clip = comfy.sd.load_clip(
                [str(models / "text_encoders" / n) for n in names],
                # as CLIPLoader reads its type (0.3.75 has no CLIPType.FLUX2: "flux2" falls back, and
                # the Mistral 3 file alone picks Flux.2's encoder)
                clip_type=getattr(comfy.sd.CLIPType, files["type"].upper(), comfy.sd.CLIPType.STABLE_DIFFUSION),
            )
            for name in names:
                slot = tm.ENCODER_FILES[name][1]
                written = comfy.utils.load_torch_file(str(models / "text_encoders" / name))
                _assert_same(getattr(clip.cond_stage_model, slot).transformer.state_dict(), written, f"{family} {name}")
            vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(models / "vae" / files["vae_name"])))
            assert vae.latent_channels == tm.latent_shape(family)[1]
        _assert_same(
            model.model.diffusion_model.state_dict(),
            tm.build_model(family, tm.FILE_SEED).model.diffusion_model.state_dict(),
            f"{family} model",
        )
        cond = clip.encode_from_tokens_scheduled(clip.tokenize("a cat"))[0][0]
        assert torch.isfinite(cond).all()


def test_flux2_tokenizer_and_encoder_are_comfyuis(comfy, tiny_clip):
    """The tiny Flux.2 CLIP is ComfyUI's Flux2Tokenizer / Flux2TEModel on a tiny tekken vocab: BOS, the
    system prompt and [INST] prompt [/INST] at the real special-token ids, the text decoded back
    exactly; the conditioning is hidden states 10/20/30 of the tiny Mistral side by side per token,
    exactly what the pack's token_features makes of the sub-encoder's output."""
    from safety_steer.nodes.apply.clip_targets import prompt_token_mask, sub_encoders, token_features

    clip = tiny_clip("flux2")
    tokens = clip.tokenize("a photo of a cat", return_word_ids=True)["mistral3_24b"]
    ids = [t[0] for t in tokens[0]]
    assert ids[:2] == [1, 17] and ids.count(3) == 1 and ids[-1] == 4  # <s> [SYSTEM_PROMPT] ... [INST] .. [/INST]
    text = clip.tokenizer.mistral3_24b.tokenizer.decode(ids[ids.index(3) + 1 : -1])
    assert text == "a photo of a cat" and len(ids) - ids.index(3) - 2 == 5  # one token a word
    encoder = sub_encoders(clip)["mistral3_24b"]
    mask = prompt_token_mask("mistral3_24b", encoder, tokens)
    assert mask.sum() == 5 and mask[ids.index(3) + 1 : -1].all()
    stacked = encoder.encode_token_weights(tokens)[0]
    assert stacked.shape == (1, 3, len(ids), tm.TINY_MISTRAL3["hidden_size"])
    flat, own_layout = token_features(stacked)
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a photo of a cat"))[0][0]
    assert torch.equal(flat, cond) and torch.equal(own_layout(flat), stacked)
    assert torch.equal(flat[..., :32], stacked[:, 0]) and torch.equal(flat[..., 64:], stacked[:, 2])
