"""Inference: steer hidden states (add / project / both), gates, the layout of assembled conditioning, reports."""
