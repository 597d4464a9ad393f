"""SafeDIG: top-k sparse autoencoders, robustness-aware routing, Repel / Blend, bundles."""
