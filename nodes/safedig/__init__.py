"""SafeDIG nodes: DiT positions, activation collection through the real sampler, train / load / adapt / apply."""
