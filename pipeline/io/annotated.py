"""GenBank and EMBL flat files (plain or gzip) through Biopython.

Records are named by accession.version (the LOCUS/ID name when there is none). Biopython
returns these sequences in uppercase: case carries no soft-masking meaning in these formats.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from Bio import SeqIO
from Bio.Seq import UndefinedSequenceError

from pipeline.errors import input_error
from pipeline.io.files import open_text, read_failure
from pipeline.io.records import SequenceRecord


def read_annotated(path: Path, fmt: str) -> Iterator[SequenceRecord]:
    """Records of a GenBank (`fmt="genbank"`) or EMBL (`fmt="embl"`) file in file order."""
    name = None
    with open_text(path) as handle:
        try:
            for record in SeqIO.parse(handle, fmt):
                name = record.id if record.id and record.id != "<unknown id>" else record.name
                try:
                    sequence = bytes(record.seq)
                except UndefinedSequenceError:
                    raise input_error(
                        path, f"record {name!r} has no sequence (a CONTIG or master record)"
                    ) from None
                yield SequenceRecord(name, sequence)
        except (ValueError, EOFError, OSError) as error:
            where = "at the first record" if name is None else f"after record {name!r}"
            raise read_failure(path, error, where) from None
