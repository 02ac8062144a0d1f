"""Measurements of long context: does the model use distant bases, and how far?

`streams` scores batches of token streams through the recurrent state (optionally resetting the
memory at fixed intervals: the memory-off ablation); `curve` gives held-out bits/base as a
function of left context on the same bases; `recall` plants a random segment twice and compares
the second copy with the first; `repeats` does the same on the genome's own exact repeats.
"""
