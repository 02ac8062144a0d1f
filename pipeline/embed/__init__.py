"""Embeddings: pooled hidden states of sequences streamed through a model (`embedder`), and
the HDF5 files that hold them (`store`: writing, reading, matching rows to task examples)."""
