"""Fine-tuning a classifier on a labelled task: the training run (`train`), the linear probes
that come before it (`probes`: the strand check and the probe candidate), and scoring sequences
with a classifier (`predict`)."""
