"""titans-dna: Titans long-context DNA language models (neural memory, attention, persistent memory)."""
