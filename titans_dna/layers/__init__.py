"""Titans layers: neural memory, attention with persistent memory, MLP, norms, blocks."""
