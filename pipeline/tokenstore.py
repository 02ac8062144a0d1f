"""The token store: tokenized genomes in one HDF5 file, read back as random windows.

Layout (format "titans-dna-token-store", version 1):

```
/                      attrs: format, format_version, tokenizer (JSON), tokenizer_version,
                              created (UTC ISO 8601), package_version, invalid_policy,
                              inputs (group names, in input order)
/<source>/             one group per input; attrs: source_path, sha256 (of the input file),
                              format, contig_names, contig_lengths, softmasked_bases (per contig)
/<source>/tokens/<c>   uint8 [L]: token ids of contig c (name with '%' and '/' %-escaped)
/<source>/softmask/<c> uint8 [ceil(L/8)]: soft-mask bits, numpy.packbits order (MSB first)
```

Tokens are chunked 8192 bases per chunk with HDF5's built-in scale-offset filter (lossless for
integers: about 3 bits per base, and faster than LZF both ways), so a random 4 kbp window
decompresses one or two small chunks. The bit-packed soft-mask uses LZF, which shrinks its long
runs to almost nothing (chunks with no soft-masked base are not even written: they read as the
fill value 0); windows of contigs with no or only soft-masked bases skip reading it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np

from pipeline import __version__
from pipeline.atomic import atomic_hdf5, check_output_parent
from pipeline.errors import PipelineError, input_error
from pipeline.io import INTERVAL_FORMATS, detect_format
from pipeline.io.files import check_readable, one_line
from pipeline.io.prefetch import prefetched
from pipeline.io.sequences import read_sequence_pieces
from pipeline.manifest import sha256_file
from pipeline.progress import Progress
from titans_dna.tokenizer import INVALID_POLICIES, DNATokenizer

STORE_FORMAT = "titans-dna-token-store"
STORE_FORMAT_VERSION = 1
TOKEN_CHUNK = 8192  # bases per chunk: a 4 kbp window touches 1-2 chunks of ~3 KiB compressed
MASK_CHUNK = TOKEN_CHUNK // 8  # bytes of packed soft-mask per chunk: the same 8192 bases
_INPUT_SUFFIXES = (".gz", ".bgz", ".fa", ".fasta", ".fna", ".fas", ".fq", ".fastq", ".gb")
_INPUT_SUFFIXES += (".gbk", ".genbank", ".embl", ".bam", ".cram", ".sam", ".bed")

log = logging.getLogger("pipeline")
_TOKENIZER = DNATokenizer()


@dataclass(frozen=True)
class ContigInfo:
    """One contig of the store; `source` is the group name of the input it came from."""

    source: str
    name: str
    length: int


@dataclass(frozen=True)
class InputInfo:
    """One input file of the store, as recorded when it was tokenized."""

    source: str
    path: str
    sha256: str
    format: str
    contigs: int
    bases: int
    softmasked_bases: int


def write_token_store(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    invalid: str = "error",
    reference: str | Path | None = None,
    genome: str | Path | None = None,
) -> None:
    """Tokenize `inputs` (any format `pipeline.io.read_sequences` reads) into the store `out`.

    `invalid` is the tokenizer's policy for bytes that are not nucleotide letters ("error"
    raises `InvalidSequenceError`, "n" reads them as N); `reference` is the genome CRAM inputs
    decode against, `genome` the indexed FASTA that BED inputs cut their intervals from.
    Written atomically: on any error no file is left.
    """
    if invalid not in INVALID_POLICIES:
        raise ValueError(f"invalid must be one of {INVALID_POLICIES}, got {invalid!r}")
    paths = [check_readable(p) for p in inputs]
    if not paths:
        raise PipelineError("no inputs to tokenize")
    out = check_output_parent(out)
    _check_distinct(paths, out)
    formats = [detect_format(p) for p in paths]  # fail on a bad input before any work
    _check_companions(paths, formats, reference, genome)
    # hashlib releases the GIL: the inputs are hashed while they are tokenized.
    hasher = ThreadPoolExecutor(max_workers=1)
    digests = [hasher.submit(sha256_file, p) for p in paths]
    try:
        with atomic_hdf5(out, libver=("v110", "latest")) as h5:
            groups = _group_names(paths)
            _write_root_attrs(h5, _TOKENIZER, invalid, groups)
            for path, fmt, group, digest in zip(paths, formats, groups, digests, strict=True):
                genome_or_reference = genome if fmt in INTERVAL_FORMATS else reference
                target = h5.create_group(group)
                _write_input(target, path, fmt, digest, invalid, genome_or_reference)
    finally:
        hasher.shutdown(cancel_futures=True)


def _check_companions(
    paths: list[Path],
    formats: list[str],
    reference: str | Path | None,
    genome: str | Path | None,
) -> None:
    for path, fmt in zip(paths, formats, strict=True):
        if fmt == "cram" and reference is None:
            raise input_error(path, "a CRAM decodes only against its reference (--reference)")
        if fmt in INTERVAL_FORMATS and genome is None:
            raise input_error(path, "BED intervals need the genome FASTA they index (--genome)")


def _check_distinct(paths: list[Path], out: Path) -> None:
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:
            raise input_error(path, "given twice as input")
        seen.add(path.resolve())
    if out.resolve() in seen:
        raise input_error(out, "the output would overwrite an input")
    if out.is_dir():
        raise input_error(out, "the output is a folder; give a file name such as store.h5")


def _group_names(paths: list[Path]) -> list[str]:
    names: list[str] = []
    for path in paths:
        stem = path.name
        while stem.lower().endswith(_INPUT_SUFFIXES) and "." in stem[1:]:
            stem = stem[: stem.rindex(".")]
        name, k = stem, 2
        while name in names:
            name, k = f"{stem}-{k}", k + 1
        names.append(name)
    return names


def _write_root_attrs(
    h5: h5py.File, tokenizer: DNATokenizer, invalid: str, groups: list[str]
) -> None:
    h5.attrs.update(
        {
            "format": STORE_FORMAT,
            "format_version": STORE_FORMAT_VERSION,
            "tokenizer": json.dumps(tokenizer.to_dict()),
            "tokenizer_version": tokenizer.version,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "package_version": __version__,
            "invalid_policy": invalid,
            "inputs": np.array(groups, dtype=h5py.string_dtype()),
        }
    )


def _write_input(
    group: h5py.Group,
    path: Path,
    fmt: str,
    digest: Future[str],
    invalid: str,
    reference: str | Path | None,
) -> None:
    tokens, softmask = group.create_group("tokens"), group.create_group("softmask")
    names, lengths, masked = [], [], []
    progress = Progress(None, f"tokenize {path.name}", "bp")
    for piece in prefetched(read_sequence_pieces(path, reference=reference, fmt=fmt)):
        if piece.length == 0:  # the policy of every command: a record needs bases
            raise input_error(path, f"record {piece.name} has an empty sequence")
        if piece.offset == 0:
            contig = _create_contig(tokens, softmask, dataset_key(piece.name), piece.length)
            names.append(piece.name)
            lengths.append(piece.length)
            masked.append(0)
        ids, mask = _TOKENIZER.encode(
            piece.data, source=str(path), record=piece.name, invalid=invalid, start=piece.offset
        )
        _write_piece(contig, piece.offset, ids, mask)
        masked[-1] += int(np.count_nonzero(mask))
        progress.update(ids.size, contig=piece.name)
    progress.close(contigs=len(names))
    group.attrs.update(
        {
            "source_path": str(path.resolve()),
            "sha256": digest.result(),
            "format": fmt,
            "contig_names": np.array(names, dtype=h5py.string_dtype()),
            "contig_lengths": np.array(lengths, dtype=np.int64),
            "softmasked_bases": np.array(masked, dtype=np.int64),
        }
    )
    _warn_if_all_masked(path, sum(lengths), sum(masked))


def _warn_if_all_masked(path: Path, total: int, masked: int) -> None:
    if total and masked == total:
        log.warning(
            "%s: every one of its %s bases is soft-masked (lowercase); if the file is lowercase "
            "for another reason than repeat masking, soft-mask weighting will treat it all as "
            "repeats",
            path,
            f"{total:,}",
        )


def _create_contig(
    tokens: h5py.Group, softmask: h5py.Group, key: str, length: int
) -> tuple[h5py.Dataset, h5py.Dataset]:
    packed = (length + 7) // 8
    if length == 0:  # HDF5 chunks cannot be empty
        empty = {"shape": (0,), "dtype": np.uint8}
        return tokens.create_dataset(key, **empty), softmask.create_dataset(key, **empty)
    token_layout = {"chunks": (min(TOKEN_CHUNK, length),), "scaleoffset": 0}
    mask_layout = {"chunks": (min(MASK_CHUNK, packed),), "compression": "lzf", "fillvalue": 0}
    return (
        tokens.create_dataset(key, shape=(length,), dtype=np.uint8, **token_layout),
        softmask.create_dataset(key, shape=(packed,), dtype=np.uint8, **mask_layout),
    )


def _write_piece(
    contig: tuple[h5py.Dataset, h5py.Dataset], offset: int, ids: np.ndarray, mask: np.ndarray
) -> None:
    if ids.size == 0:
        return
    if offset % 8:  # pieces start on whole bytes of the packed soft-mask
        raise ValueError(f"piece offset {offset} is not a multiple of 8")
    tokens, softmask = contig
    tokens[offset : offset + ids.size] = ids
    packed = np.packbits(mask)
    if packed.any():  # chunks never written read as the fill value 0: nothing soft-masked
        softmask[offset // 8 : offset // 8 + packed.size] = packed


def dataset_key(name: str) -> str:
    """HDF5 dataset name of a contig: '%' and '/' %-escaped, a lone '.' escaped."""
    key = name.replace("%", "%25").replace("/", "%2F")
    return "%2E" if key == "." else key


class TokenStore:
    """Reader of a token store: whole contigs, or windows of any length and strand.

    Dataset handles are opened on first use and kept. Safe to hand to forked or spawned data
    loader workers: a process that did not open the file reopens it on first use.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._open()

    def _open(self) -> None:
        path = check_readable(self.path)
        if path.stat().st_size == 0:
            raise input_error(path, "empty file, not a token store")
        try:
            self._h5 = h5py.File(path, "r")
        except OSError:
            raise input_error(path, "not an HDF5 file (or a corrupt one)") from None
        self._pid = os.getpid()
        try:
            self._read_layout()
        except (KeyError, ValueError, TypeError, OSError) as error:
            self._h5.close()
            raise input_error(path, f"damaged token store: {one_line(error)}") from None
        except PipelineError:
            self._h5.close()
            raise

    def _read_layout(self) -> None:
        attrs = self._h5.attrs
        if attrs.get("format") != STORE_FORMAT:
            raise input_error(self.path, f"an HDF5 file but not a token store ({STORE_FORMAT})")
        if int(attrs["format_version"]) > STORE_FORMAT_VERSION:
            raise input_error(
                self.path,
                f"token store format {attrs['format_version']} is newer than this version "
                f"reads ({STORE_FORMAT_VERSION}); update titans-dna",
            )
        self.tokenizer_version = str(attrs["tokenizer_version"])
        if self.tokenizer_version != _TOKENIZER.version:
            raise input_error(
                self.path,
                f"tokenized with {self.tokenizer_version}, but this version reads "
                f"{_TOKENIZER.version} token ids: tokenize the inputs again",
            )
        self.inputs: list[InputInfo] = []
        self.contigs: list[ContigInfo] = []
        self._keys: list[tuple[str, str]] = []
        masked: list[int] = []
        for source in attrs["inputs"]:
            group = self._h5[source]
            names = [str(n) for n in group.attrs["contig_names"]]
            lengths = [int(n) for n in group.attrs["contig_lengths"]]
            soft = [int(n) for n in group.attrs["softmasked_bases"]]
            self.inputs.append(_input_info(source, group.attrs, names, lengths, soft))
            for name, length in zip(names, lengths, strict=True):
                self.contigs.append(ContigInfo(source, name, length))
                self._keys.append((source, dataset_key(name)))
            masked.extend(soft)
        self._masked = masked
        self._tokens: list[h5py.Dataset | None] = [None] * len(self.contigs)
        self._softmask: list[h5py.Dataset | None] = [None] * len(self.contigs)

    def window(
        self, contig: int, start: int, length: int, strand: str = "+"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ids uint8 [length] and soft-mask bool [length] of contig[start:start + length].

        strand "-" gives the reverse complement of the same interval (mask reversed).
        """
        info = self.contigs[contig]
        stop = start + length
        if start < 0 or length < 0 or stop > info.length:
            raise ValueError(
                f"window {start}-{stop} lies outside contig {info.name!r} (length {info.length})"
            )
        if strand not in ("+", "-"):
            raise ValueError(f"strand must be '+' or '-', got {strand!r}")
        ids = self._token_dataset(contig)[start:stop]
        mask = self._mask(contig, start, stop)
        if strand == "-":
            return _TOKENIZER.reverse_complement(ids), mask[::-1].copy()
        return ids, mask

    def contig_tokens(self, contig: int) -> np.ndarray:
        """All ids of a contig, uint8 [L]."""
        return self._token_dataset(contig)[:]

    def iter_contigs(self) -> Iterator[tuple[ContigInfo, np.ndarray, np.ndarray]]:
        """(info, ids uint8 [L], soft-mask bool [L]) for every contig in store order."""
        for contig, info in enumerate(self.contigs):
            yield info, self.contig_tokens(contig), self._mask(contig, 0, info.length)

    def _token_dataset(self, contig: int) -> h5py.Dataset:
        if self._pid != os.getpid():
            self._reopen()
        dataset = self._tokens[contig]
        if dataset is None:
            source, key = self._keys[contig]
            dataset = self._tokens[contig] = self._h5[source]["tokens"][key]
        return dataset

    def _mask(self, contig: int, start: int, stop: int) -> np.ndarray:
        masked = self._masked[contig]
        if masked == 0:
            return np.zeros(stop - start, dtype=bool)
        if masked == self.contigs[contig].length:
            return np.ones(stop - start, dtype=bool)
        dataset = self._softmask[contig]
        if dataset is None:
            source, key = self._keys[contig]
            dataset = self._softmask[contig] = self._h5[source]["softmask"][key]
        first = start >> 3
        bits = np.unpackbits(dataset[first : (stop + 7) >> 3])
        offset = start - (first << 3)
        return bits[offset : offset + stop - start].view(bool)

    def _reopen(self) -> None:
        # HDF5 handles must not cross a fork: open the file anew in this process.
        self._h5 = h5py.File(self.path, "r")
        self._pid = os.getpid()
        self._tokens = [None] * len(self.contigs)
        self._softmask = [None] * len(self.contigs)

    def close(self) -> None:
        """Close the file; the store cannot be read afterwards."""
        if self._pid == os.getpid():
            self._h5.close()

    def __enter__(self) -> TokenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, object]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.path = Path(state["path"])
        self._open()

    def __repr__(self) -> str:
        return f"TokenStore({str(self.path)!r}, {len(self.contigs)} contigs)"


def _input_info(
    source: str, attrs: h5py.AttributeManager, names: list[str], lengths: list[int], soft: list[int]
) -> InputInfo:
    return InputInfo(
        source=source,
        path=str(attrs["source_path"]),
        sha256=str(attrs["sha256"]),
        format=str(attrs["format"]),
        contigs=len(names),
        bases=sum(lengths),
        softmasked_bases=sum(soft),
    )
