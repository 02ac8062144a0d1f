"""Sequence inputs: FASTA/FASTQ, GenBank/EMBL, BAM/CRAM/SAM, and BED intervals of a genome."""

from pipeline.io.bed import read_bed_sequences
from pipeline.io.detect import FORMATS, INTERVAL_FORMATS, detect_format
from pipeline.io.fastx import open_indexed_fasta
from pipeline.io.records import SequenceRecord
from pipeline.io.sequences import read_sequences

__all__ = [
    "FORMATS",
    "INTERVAL_FORMATS",
    "SequenceRecord",
    "detect_format",
    "open_indexed_fasta",
    "read_bed_sequences",
    "read_sequences",
]
