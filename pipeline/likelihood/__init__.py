"""Per-base likelihood tracks: log2 p(base | everything before it) streamed through the model.

`sources` says what is scored (sequence records, or genome intervals with left context),
`scoring` streams them through the recurrent state in pieces, `tracks` writes bedGraph, bigWig
and a summary.
"""
