"""Input fetching: a local path or a URL, verified by sha256 and written atomically.

A URL source is first looked up by file name in the mirror folders (config `mirror`, environment
`TITANS_DNA_MIRROR`); a mirror copy is used only when its checksum matches. Downloads retry
transient failures (connection errors, timeouts, HTTP 408/429/5xx, short reads) with exponential
backoff; a checksum mismatch or another HTTP error fails at once. The file appears under its
final name only once it is complete and verified.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from pipeline import __version__
from pipeline.atomic import atomic_file, check_output_parent
from pipeline.errors import PipelineError, input_error
from pipeline.manifest import sha256_file
from pipeline.progress import Progress

log = logging.getLogger("pipeline")

MIRROR_ENV = "TITANS_DNA_MIRROR"
URL_SCHEMES = ("http", "https", "ftp", "file")
CHUNK_BYTES = 1 << 20
MAX_BACKOFF_SECONDS = 60.0
RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class DownloadPolicy:
    """How hard to try: `retries` after the first attempt, waits `backoff * 2**i` seconds."""

    retries: int = 3
    backoff: float = 2.0
    timeout: float = 60.0


class _Transient(Exception):
    """A failure worth retrying (network trouble, server overload, short read)."""


def is_url(source: str) -> bool:
    """True when `source` names a URL (http, https, ftp, file) rather than a local path."""
    return urllib.parse.urlparse(source).scheme.lower() in URL_SCHEMES


def source_basename(source: str) -> str:
    """The file name a source ends in (URL path or local path): the key for mirror lookups."""
    if is_url(source):
        return PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(source).path)).name
    return Path(source).name


def normalize_sha256(value: str | None) -> str | None:
    """Lower-case a 64-hex-digit checksum; raise a clear error for anything else."""
    if value is None:
        return None
    digest = value.strip().lower()
    if not _SHA256.match(digest):
        raise PipelineError(f"sha256 {value!r} is not 64 hexadecimal digits")
    return digest


def mirror_folders(explicit: Sequence[str | Path] | None) -> list[Path]:
    """The mirror folders: `explicit` if given, else `TITANS_DNA_MIRROR` (an os.pathsep list)."""
    if explicit:
        folders = [Path(folder) for folder in explicit]
    else:
        folders = [Path(p) for p in os.environ.get(MIRROR_ENV, "").split(os.pathsep) if p]
    for folder in folders:
        if not folder.is_dir():
            raise input_error(folder, "mirror folder does not exist")
    return folders


def fetch(
    source: str,
    out: str | Path,
    *,
    sha256: str | None = None,
    mirrors: Sequence[Path] = (),
    policy: DownloadPolicy = DownloadPolicy(),
) -> str:
    """Place `source` at `out`, verified; return "local", "mirror" or "download".

    A URL needs `sha256`. A local path is verified when `sha256` is given, then copied (a copy,
    not a link: Snakemake touches outputs, which must never alter the original).
    """
    out = check_output_parent(out)
    expected = normalize_sha256(sha256)
    if not is_url(source):
        scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", source)
        if scheme:
            raise PipelineError(
                f"{source}: unsupported URL scheme {scheme[1]!r} (use {', '.join(URL_SCHEMES)})"
            )
        path = Path(source)
        if not path.is_file():
            raise input_error(path, "no such file")
        _copy_verified(path, out, expected)
        return "local"
    if expected is None:
        raise PipelineError(
            f"{source}: a URL source needs a sha256 checksum to verify the download"
        )
    if _from_mirror(source, out, expected, mirrors):
        return "mirror"
    download(source, out, sha256=expected, policy=policy)
    return "download"


def _from_mirror(source: str, out: Path, expected: str, mirrors: Sequence[Path]) -> bool:
    name = source_basename(source)
    for folder in mirrors:
        candidate = folder / name
        if not candidate.is_file():
            continue
        got = sha256_file(candidate)
        if got == expected:
            log.info("%s: using mirror copy %s", source, candidate)
            _copy_verified(candidate, out, expected)
            return True
        log.warning(
            "%s: checksum %s does not match %s; ignoring this mirror copy", candidate, got, expected
        )
    return False


def _copy_verified(path: Path, out: Path, expected: str | None) -> None:
    with atomic_file(out) as tmp, open(path, "rb") as src, open(tmp, "wb") as dst:
        got = _copy_hashing(src, dst, lambda n: None)
        _check_digest(str(path), got, expected)
    log.info("%s -> %s (sha256 %s)", path, out, got)


def _copy_hashing(src: BinaryIO, dst: BinaryIO, advance: Callable[[int], object]) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: src.read(CHUNK_BYTES), b""):
        digest.update(block)
        dst.write(block)
        advance(len(block))
    return digest.hexdigest()


def _check_digest(what: str, got: str, expected: str | None) -> None:
    if expected is not None and got != expected:
        raise PipelineError(f"{what}: sha256 mismatch: expected {expected}, got {got}")


def download(
    url: str, out: str | Path, *, sha256: str, policy: DownloadPolicy = DownloadPolicy()
) -> None:
    """Download `url` to `out` with retries; verify `sha256` before the file takes its name."""
    out = check_output_parent(out)
    attempts = policy.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            with atomic_file(out) as tmp:
                got = _download_once(url, tmp, policy.timeout)
                _check_digest(url, got, sha256)
            log.info("%s -> %s (sha256 %s)", url, out, got)
            return
        except _Transient as error:
            if attempt == attempts:
                raise PipelineError(
                    f"{url}: download failed after {attempts} attempts: {error}"
                ) from None
            wait = min(policy.backoff * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
            log.warning(
                "%s: attempt %d/%d failed (%s); retrying in %.1f s",
                url,
                attempt,
                attempts,
                error,
                wait,
            )
            time.sleep(wait)


def _download_once(url: str, tmp: Path, timeout: float) -> str:
    """One attempt; returns the sha256 of what arrived. Raises _Transient for retryable failures."""
    request = urllib.request.Request(url, headers={"User-Agent": f"titans-dna/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as dst:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            progress = Progress(total, f"download {source_basename(url)}", unit="B")
            got = _copy_hashing(response, dst, progress.update)
            progress.close()
            if total is not None and progress.count != total:
                raise _Transient(f"short read: {progress.count:.0f} of {total} bytes")
            return got
    except urllib.error.HTTPError as error:
        if error.code in RETRYABLE_HTTP:
            raise _Transient(f"HTTP {error.code} {error.reason}") from None
        raise PipelineError(f"{url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, FileNotFoundError | PermissionError):
            raise PipelineError(f"{url}: {error.reason}") from None
        raise _Transient(str(error.reason)) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as error:
        raise _Transient(f"{type(error).__name__}: {error}") from None
    except ValueError as error:
        raise PipelineError(f"{url}: {error}") from None
