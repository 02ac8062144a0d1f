"""Pretraining of Titans DNA language models on token stores: configuration, data sampling, the
training loop, resumable checkpoints, distributed (torchrun) training and a Markov baseline."""
