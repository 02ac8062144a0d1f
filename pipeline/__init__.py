"""titans-dna pipeline: genome and task I/O, token store, training, embedding, reports, CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("titans-dna")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
