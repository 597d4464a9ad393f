"""SafeDIG nodes: train sparse autoencoders at routed DiT positions, adapt their decoders to a
new model, load them, and apply Repel / Blend during sampling."""

from __future__ import annotations

import math
import os

import torch
from comfy_api.latest import io, ui

from ...steering.application.meter import meter
from ...steering.evaluation.transfer import training_pairs_for
from ...steering.pack import pack_sha256
from ...steering.safedig.bundle import SafeDIGBundle, load_bundle, save_bundle
from ...steering.safedig.operations import blend, repel, select_harmful_features
from ...steering.safedig.routing import score_position, top_positions
from ...steering.safedig.sae import adapt_decoder, check_compatible, prompt_codes, sample_rows, train_sae
from ...steering.transfer.aligned import anchor_subset, per_category_subset
from ..apply.inputs import sampling_window_inputs
from ..apply.meter_ui import METER_KEY
from ..input_checks import check_at_run_time, validation_result
from ..model_folders import list_sae_bundles, sae_bundle_path, sae_save_path
from ..progress import progress_reporter
from ..sampling_window import SigmaWindow, positive_rows
from ..search_aliases import search_aliases
from ..types import DirectionPackType
from .activations import collect_activations
from .positions import available_positions, block_counts, hidden_width, patch_positions, spread_positions

SafetySAE = io.Custom("SAFETY_SAE")
OPERATIONS = ("repel", "blend")
MAX_TRAIN_TOKENS = 50_000
TRAIN_BATCH = 256  # train_sae's and adapt_decoder's own default mini-batch


def _encode(clip, text: str):
    """What CLIPTextEncode does."""
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


class SafetySteerTrainSAE(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafetySteerTrainSAE",
            display_name="Train Safety SAE (SafeDIG)",
            category="safety_steer/safedig",
            **search_aliases("SafetySteerTrainSAE"),
            description=(
                "Collects this DiT's activations for the pack's paired safe/unsafe training prompts and "
                "benign anchors (one denoising step each), ranks candidate positions by how stable "
                "their harmful features stay when the harm category shifts, trains a top-k sparse "
                "autoencoder at the best ones, and picks the features that fire on unsafe prompts. "
                "Saved to models/safety_saes/."
            ),
            inputs=[
                io.Model.Input("model", tooltip="Flux, Chroma, Flux.2, SD3.x, Wan 2.x or Qwen-Image."),
                io.Clip.Input("clip", tooltip="The model's own text encoders."),
                DirectionPackType.Input(
                    "direction",
                    tooltip="A pack from Load Safety Direction: its training pairs "
                    "and anchors are the training prompts.",
                ),
                io.Latent.Input("latent", tooltip="An empty latent at the size you generate at."),
                io.String.Input(
                    "positions",
                    default="auto",
                    tooltip="auto: route among `candidates` positions spread over depth and keep the "
                    "best `keep`; or names separated by commas (text_in, double.3.img, single.10 ...).",
                ),
                io.Int.Input(
                    "candidates",
                    default=6,
                    min=1,
                    max=64,
                    tooltip="positions auto: how many positions, spread over the depth, are compared (more = a "
                    "better pick, slower; 1-64).",
                ),
                io.Int.Input(
                    "keep",
                    default=2,
                    min=1,
                    max=16,
                    tooltip="How many of the best-ranked positions get an SAE (1-16; more = broader removal, more "
                    "time).",
                ),
                io.Int.Input(
                    "pairs_per_category",
                    default=16,
                    min=2,
                    max=1000,
                    tooltip="Safe/unsafe training prompt pairs per harm category, from the pack (2-1000; more = "
                    "steadier features, slower).",
                ),
                io.Int.Input(
                    "anchors",
                    default=64,
                    min=0,
                    max=5000,
                    tooltip="Benign anchor prompts added to the SAE's training tokens (0-5000; they keep ordinary "
                    "content well reconstructed).",
                ),
                io.Int.Input(
                    "expansion",
                    default=4,
                    min=1,
                    max=64,
                    tooltip="SAE width as a multiple of the block's width (4 = 4x as many features as channels; "
                    "wider = finer features, more memory).",
                ),
                io.Int.Input(
                    "k",
                    default=32,
                    min=1,
                    max=1024,
                    tooltip="Top-k sparsity: features active per token (1-1024, at most the SAE's width; lower = "
                    "sparser, more specific features).",
                ),
                io.Int.Input(
                    "epochs",
                    default=20,
                    min=1,
                    max=1000,
                    tooltip="Passes over the collected tokens when training each SAE (1-1000).",
                ),
                io.Float.Input(
                    "learning_rate",
                    default=3e-3,
                    min=1e-5,
                    max=1e-1,
                    step=1e-4,
                    tooltip="Adam learning rate of the SAE (3e-3 recovers planted features from a few "
                    "thousand tokens; 1e-3 underfits small sets).",
                ),
                io.Int.Input(
                    "harmful_features",
                    default=16,
                    min=1,
                    max=4096,
                    tooltip="How many features, those firing most on unsafe prompts over safe ones, Apply SafeDIG "
                    "removes (1-4096; more = broader removal, more side effects).",
                ),
                io.Float.Input(
                    "noise_level",
                    default=0.5,
                    min=0.0,
                    max=1.0,
                    step=0.05,
                    tooltip="Where in sampling the activations are taken (0 = pure noise, 1 = the end).",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=2**31 - 1,
                    tooltip="Seeds the noise, the token sample and the SAE's initialisation (same seed = same bundle).",
                ),
                io.String.Input(
                    "filename_prefix",
                    default="safedig",
                    tooltip="File name start of the bundle saved in models/safety_saes/ (a number is added).",
                ),
            ],
            outputs=[
                SafetySAE.Output(
                    display_name="safedig", tooltip="The trained bundle, for Apply SafeDIG (also saved to disk)."
                ),
                io.String.Output(
                    display_name="report", tooltip="Positions chosen, routing scores and SAE sizes, as text."
                ),
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, learning_rate, noise_level):
        return validation_result(cls, locals())

    @classmethod
    def execute(
        cls,
        model,
        clip,
        direction,
        latent,
        positions,
        candidates,
        keep,
        pairs_per_category,
        anchors,
        expansion,
        k,
        epochs,
        learning_rate,
        harmful_features,
        noise_level,
        seed,
        filename_prefix,
    ) -> io.NodeOutput:
        check_at_run_time(cls, locals())
        label, _, _ = block_counts(model)
        names = (
            spread_positions(model, candidates)
            if positions.strip() == "auto"
            else [p.strip() for p in positions.split(",") if p.strip()]
        )
        unknown = [p for p in names if p not in available_positions(model)]
        if unknown or not names:
            raise ValueError(
                f"{label} has no position {', '.join(unknown) or '(none given)'}; it has "
                f"{', '.join(available_positions(model))}."
            )
        pairs = per_category_subset(training_pairs_for(direction), pairs_per_category)
        anchor_index = anchor_subset(len(direction.anchor_prompts), anchors).tolist() if anchors else []
        texts = (
            [p.safe for p in pairs] + [p.unsafe for p in pairs] + [direction.anchor_prompts[i] for i in anchor_index]
        )
        progress = progress_reporter(len(texts) * 2)
        conditionings = []
        for number, text in enumerate(texts, start=1):
            conditionings.append(_encode(clip, text))
            progress(number)
        activations = collect_activations(
            model, conditionings, latent, names, noise_level, seed, progress_reporter(len(texts) * 2, offset=len(texts))
        )
        n = len(pairs)
        categories = [p.category for p in pairs]
        routing = {}
        chosen = names
        if positions.strip() == "auto" and len(names) > keep:
            for position in names:
                tokens = activations[position]
                routing[position] = score_position(
                    tokens[:n], tokens[n : 2 * n], categories, anchors=tokens[2 * n :], seed=seed
                )
            chosen = top_positions(routing, keep)
        saes, features = {}, {}
        for position in chosen:
            tokens = activations[position]
            sample = sample_rows(torch.cat(tokens), MAX_TRAIN_TOKENS, seed)
            sae = train_sae(
                sample,
                expansion=expansion,
                k=k,
                epochs=epochs,
                lr=learning_rate,
                seed=seed,
                metadata={"position": position, "model_type": label, "noise_level": noise_level},
                progress=progress_reporter(epochs * math.ceil(sample.shape[0] / TRAIN_BATCH)),
                batch_size=TRAIN_BATCH,
            )
            features[position] = select_harmful_features(
                prompt_codes(sae, tokens[:n]), prompt_codes(sae, tokens[n : 2 * n]), harmful_features
            )
            saes[position] = sae
        bundle = SafeDIGBundle(
            saes,
            features,
            {
                "model_type": label,
                "pairs_per_category": pairs_per_category,
                "n_pairs": n,
                "n_anchors": len(anchor_index),
                "train_pairs_sha256": direction.metadata.get("train_pairs_sha256"),
                "pack_sha256": pack_sha256(direction) if direction.path else None,
                "noise_level": noise_level,
                "seed": seed,
                "routing": {p: s.as_dict() for p, s in routing.items()},
                "chosen": chosen,
            },
        )
        path = save_bundle(bundle, sae_save_path(filename_prefix))
        text = describe_bundle(bundle, os.path.basename(path))
        return io.NodeOutput(bundle, text, ui=ui.PreviewText(text))


def describe_bundle(bundle: SafeDIGBundle, name: str = "") -> str:
    meta = bundle.metadata
    lines = [f"SafeDIG bundle {name} for {meta.get('model_type')}: positions {', '.join(bundle.positions)}"]
    for position, sae in bundle.saes.items():
        m = sae.metadata
        lines.append(
            f"  {position}: width {sae.width} (x{m.get('expansion', '?')}), k {sae.k}, "
            f"{len(bundle.features[position].indices)} harmful features"
            + (f", adapted decoder (from {m['adapted_from'][:12]})" if m.get("adapted_from") else "")
        )
    if meta.get("routing"):
        lines.append("routing (robustness score; higher = harmful features stay stable across categories):")
        for position, score in sorted(meta["routing"].items(), key=lambda item: -item[1]["score"]):
            lines.append(
                f"  {position}: {score['score']:.3f}" + ("  <- chosen" if position in meta.get("chosen", []) else "")
            )
    return "\n".join(lines)


class SafetySteerLoadSAE(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafetySteerLoadSAE",
            display_name="Load Safety SAE (SafeDIG)",
            category="safety_steer/safedig",
            **search_aliases("SafetySteerLoadSAE"),
            description="Loads a SafeDIG bundle (sparse autoencoders at DiT positions) from models/safety_saes/.",
            inputs=[
                io.Combo.Input(
                    "bundle",
                    options=list_sae_bundles(),
                    tooltip="A bundle in models/safety_saes/ (from Train Safety SAE or Adapt Safety SAE Decoder); it "
                    "only fits the model type it was trained on.",
                )
            ],
            outputs=[
                SafetySAE.Output(
                    display_name="safedig", tooltip="The bundle, for Apply SafeDIG or Adapt Safety SAE Decoder."
                ),
                io.String.Output(display_name="summary", tooltip="Model type, positions and SAE sizes, as text."),
            ],
        )

    @classmethod
    def validate_inputs(cls, bundle):
        if bundle not in list_sae_bundles():
            return (
                f"SafeDIG bundle {bundle!r} is not in models/safety_saes/. Available: "
                f"{', '.join(list_sae_bundles()) or 'none (train one with Train Safety SAE)'}."
            )
        return True

    @classmethod
    def fingerprint_inputs(cls, bundle):
        path = sae_bundle_path(bundle)
        return (path, os.path.getmtime(path))

    @classmethod
    def execute(cls, bundle) -> io.NodeOutput:
        loaded = load_bundle(sae_bundle_path(bundle))
        return io.NodeOutput(loaded, describe_bundle(loaded, bundle))


class SafetySteerAdaptSAEDecoder(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafetySteerAdaptSAEDecoder",
            display_name="Adapt Safety SAE Decoder (SafeDIG)",
            category="safety_steer/safedig",
            **search_aliases("SafetySteerAdaptSAEDecoder"),
            description=(
                "Carries a SafeDIG bundle to another model of the same architecture (a fine-tune, "
                "another checkpoint): the encoders stay frozen as the safety dictionary, only the "
                "decoders are refitted to this model's activations on BENIGN anchor prompts, so the "
                "new model never sees unsafe prompts."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The new model (same architecture as the bundle's, e.g. a fine-tune)."),
                io.Clip.Input("clip", tooltip="The new model's own text encoders."),
                SafetySAE.Input(
                    "safedig", tooltip="The bundle to carry over (from Load Safety SAE or Train Safety SAE)."
                ),
                DirectionPackType.Input("direction", tooltip="A pack: its benign anchors are the prompts."),
                io.Latent.Input("latent", tooltip="An empty latent at the size you generate at."),
                io.Int.Input(
                    "anchors",
                    default=128,
                    min=2,
                    max=5000,
                    tooltip="Benign anchor prompts the decoders are refitted on (2-5000; more = closer fit, slower).",
                ),
                io.Int.Input(
                    "epochs",
                    default=20,
                    min=1,
                    max=1000,
                    tooltip="Passes over the anchor tokens when refitting each decoder (1-1000).",
                ),
                io.Float.Input(
                    "noise_level",
                    default=0.5,
                    min=0.0,
                    max=1.0,
                    tooltip="Where in sampling the activations are taken (0 = pure noise, 1 = the end); "
                    "keep the training value.",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=2**31 - 1,
                    tooltip="Seeds the noise and the token sample (same seed = same adapted bundle).",
                ),
                io.String.Input(
                    "filename_prefix",
                    default="safedig_adapted",
                    tooltip="File name start of the adapted bundle saved in models/safety_saes/.",
                ),
            ],
            outputs=[
                SafetySAE.Output(display_name="safedig", tooltip="The adapted bundle, for Apply SafeDIG (also saved)."),
                io.String.Output(display_name="report", tooltip="The adapted bundle's positions and sizes, as text."),
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, noise_level):
        return validation_result(cls, locals())

    @classmethod
    def execute(
        cls, model, clip, safedig, direction, latent, anchors, epochs, noise_level, seed, filename_prefix
    ) -> io.NodeOutput:
        check_at_run_time(cls, locals())
        label, _, _ = block_counts(model)
        check_bundle_fits(safedig, model)
        index = anchor_subset(len(direction.anchor_prompts), anchors).tolist()
        progress = progress_reporter(len(index) * 2)  # encoding, then one denoising step per anchor
        conditionings = []
        for number, i in enumerate(index, start=1):
            conditionings.append(_encode(clip, direction.anchor_prompts[i]))
            progress(number)
        activations = collect_activations(
            model,
            conditionings,
            latent,
            safedig.positions,
            noise_level,
            seed,
            progress_reporter(len(index) * 2, offset=len(index)),
        )
        saes = {}
        for position, sae in safedig.saes.items():
            sample = sample_rows(torch.cat(activations[position]), MAX_TRAIN_TOKENS, seed)
            saes[position] = adapt_decoder(
                sae,
                sample,
                epochs=epochs,
                seed=seed,
                batch_size=TRAIN_BATCH,
                progress=progress_reporter(epochs * math.ceil(sample.shape[0] / TRAIN_BATCH)),
            )
        bundle = SafeDIGBundle(
            saes, dict(safedig.features), {**safedig.metadata, "model_type": label, "adapted_on_anchors": len(index)}
        )
        path = save_bundle(bundle, sae_save_path(filename_prefix))
        text = describe_bundle(bundle, os.path.basename(path))
        return io.NodeOutput(bundle, text, ui=ui.PreviewText(text))


def check_bundle_fits(bundle: SafeDIGBundle, model) -> None:
    label, _, _ = block_counts(model)
    width = hidden_width(model)
    for position, sae in bundle.saes.items():
        if position not in available_positions(model):
            raise ValueError(
                f"This SafeDIG bundle has an SAE at {position!r}, which this {label} model does not "
                f"have (it has {', '.join(available_positions(model))})."
            )
        check_compatible(sae, position, label, width)


class SafetySteerApplySafeDIG(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafetySteerApplySafeDIG",
            display_name="Apply SafeDIG (Repel / Blend)",
            category="safety_steer/safedig",
            **search_aliases("SafetySteerApplySafeDIG"),
            description=(
                "Returns a copy of the MODEL whose DiT blocks remove harmful sparse features at the "
                "bundle's positions while sampling. repel: subtract the harmful features' directions, "
                "scaled by how strongly they fire. blend: pull activations that carry harmful features "
                "towards the SAE's reconstruction without them. Tokens with no harmful feature active "
                "are left exactly as they are. Stacks with Apply Safety Steer and other patches."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model the bundle was trained (or adapted) for."),
                SafetySAE.Input(
                    "safedig", tooltip="From Load Safety SAE, Train Safety SAE or Adapt Safety SAE Decoder."
                ),
                io.Combo.Input(
                    "operation",
                    options=list(OPERATIONS),
                    default="repel",
                    tooltip="repel: subtract the harmful features' directions. blend: pull towards the SAE's "
                    "reconstruction without them (gentler).",
                ),
                io.Float.Input(
                    "strength",
                    default=1.0,
                    min=0.0,
                    max=10.0,
                    step=0.05,
                    tooltip="repel: multiple of the harmful components removed (1 = all of it). "
                    "blend: weight towards the safe reconstruction (1 = all the way). 0 = off.",
                ),
                *sampling_window_inputs(),
            ],
            outputs=[io.Model.Output(display_name="model", tooltip="A patched copy; connect it to the sampler.")],
        )

    @classmethod
    def validate_inputs(cls, operation, strength, start_percent, end_percent, apply_to):
        return validation_result(cls, locals())

    @classmethod
    def execute(cls, model, safedig, operation, strength, start_percent, end_percent, apply_to) -> io.NodeOutput:
        check_at_run_time(cls, locals())
        if operation not in OPERATIONS:
            raise ValueError(f"Unknown operation {operation!r}; use one of {OPERATIONS}.")
        check_bundle_fits(safedig, model)
        payload = safedig_meter(strength, operation)
        if strength == 0:
            return io.NodeOutput(model.clone(), ui={METER_KEY: [payload]})
        window = SigmaWindow(model, start_percent, end_percent)
        include_negative = apply_to == "positive and negative"
        operate = repel if operation == "repel" else blend

        def hook_for(position: str):
            sae, features = safedig.saes[position], safedig.features[position]

            def hook(tensor: torch.Tensor, options: dict) -> torch.Tensor:
                if not window.contains(options.get("sigmas")):
                    return tensor
                rows = positive_rows(
                    tuple(options.get("cond_or_uncond") or ()), tensor.shape[0], include_negative, tensor.device
                )
                if tensor.shape[-1] != sae.d_in:
                    raise ValueError(
                        f"SafeDIG's {position} SAE reads {sae.d_in} features but this model gives "
                        f"{tensor.shape[-1]} there: the bundle was trained for another model."
                    )
                if bool(rows.all()):
                    return operate(tensor, sae, features, strength)
                out = tensor.clone()
                out[rows] = operate(tensor[rows], sae, features, strength)
                return out

            return hook

        return io.NodeOutput(
            patch_positions(model, {p: hook_for(p) for p in safedig.positions}), ui={METER_KEY: [payload]}
        )


def safedig_meter(strength: float, operation: str) -> dict:
    """SafeDIG removes sparse features inside the DiT, not a direction: there is no prompt
    projection to show, only the operation and strength (no gate: features fire per token)."""
    return meter(
        [],
        None,
        None,
        strength,
        f"none (SafeDIG {operation}: acts on tokens whose harmful features fire)",
        note="SafeDIG removes harmful sparse features inside the DiT rather than steering along a "
        "direction, so there is no per-category projection to show.",
    )


SAFEDIG_NODES = [SafetySteerTrainSAE, SafetySteerLoadSAE, SafetySteerAdaptSAEDecoder, SafetySteerApplySafeDIG]
