"""Measuring transfer: transported vs native vs random directions on a target text model."""
