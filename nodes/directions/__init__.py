"""Nodes that bring a direction into a graph: load a pack, show it, fit it to this graph's encoders, mix categories."""
