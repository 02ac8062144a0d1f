"""Alleles against the genome: REF checks and left-alignment (as `vt normalize`, `bcftools norm`).

A variant is (p, REF, ALT) with p the 0-based position of REF's first base. Normalizing trims
bases shared at the right end (shifting left through the genome when an allele empties), then
bases shared at the left end while both alleles keep at least one: the leftmost, shortest
description, the same for every equivalent one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Allele:
    """A variant in left-aligned form: REF `ref` at 0-based `pos` replaced by `alt` (uppercase)."""

    pos: int
    ref: str
    alt: str


def normalize(genome: bytes, pos: int, ref: str, alt: str) -> Allele:
    """The left-aligned, trimmed form of REF -> ALT at `pos` on `genome` (uppercase bytes)."""
    ref, alt = ref.upper(), alt.upper()
    if ref == alt:  # no change: scores 0
        return Allele(pos, ref, alt)
    while True:
        if ref and alt and ref[-1] == alt[-1]:
            ref, alt = ref[:-1], alt[:-1]
            continue
        if (not ref or not alt) and pos > 0:
            base = chr(genome[pos - 1])
            ref, alt, pos = base + ref, base + alt, pos - 1
            continue
        break
    while len(ref) > 1 and len(alt) > 1 and ref[0] == alt[0]:
        ref, alt, pos = ref[1:], alt[1:], pos + 1
    return Allele(pos, ref, alt)


def ref_matches(genome: bytes, pos: int, ref: str) -> bool:
    """True when the genome holds REF at `pos` (case ignored; N in REF matches anything)."""
    found = genome[pos : pos + len(ref)].decode("ascii").upper()
    return len(found) == len(ref) and all(
        r in (g, "N") for r, g in zip(ref.upper(), found, strict=True)
    )


SYMBOLIC = ("<", "[", "]", "*", ".")


def skip_reason(alt: str | None) -> str | None:
    """Why an ALT allele cannot be scored (symbolic, breakend, missing), or None."""
    if alt is None or alt in ("", "."):
        return "missing_alt"
    if alt == "*":
        return "spanning_deletion"
    if alt.startswith("<"):
        return "symbolic"
    if "[" in alt or "]" in alt:
        return "breakend"
    if not alt.isalpha():
        return "not_sequence"
    return None
