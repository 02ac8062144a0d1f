"""Atomic outputs of the pipeline, and the one-line errors of writing them.

Files and folders are built under a temporary sibling name and renamed when complete
(`titans_dna.atomic`): a crash, a kill or a full disk never leaves a partial output under the
final name, and a later run of the same output removes what a killed run left. A folder output
gets a marker file when complete (`OUTPUT_MARKER`); an existing folder is replaced only when it
carries the marker (or is empty), so a user's folder is never deleted. Failures to write
(full disk, read-only folder, no permission) become one PipelineError naming the output;
HDF5 files are written through `atomic_hdf5`, which keeps such failures from the HDF5 library
(it crashes on them).
"""

from __future__ import annotations

import errno
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import OutputError, input_error
from titans_dna import atomic

if TYPE_CHECKING:
    import h5py

OUTPUT_MARKER = ".titans-dna-output"
_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "file too large (file size limit)",
}


def write_failure(final: Path, error: OSError) -> OutputError:
    """One line for a failure to write `final`: "X: cannot write: no space left on device"."""
    reason = _REASONS.get(error.errno) or error.strerror or str(error).splitlines()[0]
    return OutputError(f"{final}: cannot write: {reason}")


def check_output_parent(final: str | Path) -> Path:
    """`final` as a Path; PipelineError unless its folder exists and is writable."""
    final = Path(final)
    if not final.parent.is_dir():
        raise input_error(final, f"output folder {final.parent} does not exist")
    if not os.access(final.parent, os.W_OK | os.X_OK):
        raise OutputError(f"{final}: cannot write in {final.parent} (read-only or no permission)")
    return final


@contextmanager
def atomic_file(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to `final`, on any error remove it."""
    final = check_output_parent(final)
    try:
        with atomic.atomic_file(final) as tmp:
            yield tmp
    except IsADirectoryError:
        raise input_error(final, "is a folder; the output must be a file") from None
    except OSError as error:
        raise write_failure(final, error) from None


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a new temporary folder; on success it replaces `final` (old contents removed).

    An existing `final` must be an earlier output of titans-dna (or empty): anything else is
    refused with one line before any work starts.
    """
    final = check_output_parent(final)
    try:
        with atomic.atomic_dir(final, replaceable=is_replaceable_output) as tmp:
            yield tmp
            (tmp / OUTPUT_MARKER).write_text(json.dumps({"written_by": "titans-dna"}) + "\n")
    except FileExistsError:
        what = "a file" if final.is_file() else "a folder titans-dna did not write"
        raise input_error(
            final, f"is {what}; it is left untouched (choose another output or remove it)"
        ) from None
    except OSError as error:
        raise write_failure(final, error) from None


def is_replaceable_output(folder: Path) -> bool:
    """True for an empty folder or one a titans-dna command wrote (it holds OUTPUT_MARKER)."""
    return (folder / OUTPUT_MARKER).is_file() or not any(folder.iterdir())


class _GuardedFile(io.RawIOBase):
    """A file HDF5 writes through (h5py's fileobj driver) whose failures the library never sees.

    HDF5 cannot recover from a failed write: a full disk makes it crash while closing. Here the
    first failure is recorded and later writes are dropped, so the library finishes normally;
    the caller then raises the recorded error and discards the file.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = open(path, "w+b", buffering=0)  # noqa: SIM115 (closed by `release`)
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer) -> int:
        count = self._file.readinto(buffer)
        if self.error is not None and count < len(buffer):  # data that was dropped
            memoryview(buffer)[count:] = bytes(len(buffer) - count)
            self._file.seek(len(buffer) - count, io.SEEK_CUR)
            return len(buffer)
        return count

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if self.error is None:
            try:
                written = self._file.write(data)
                if written == size:
                    return written
                self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError as error:
                self.error = error
        self._file.seek(size, io.SEEK_CUR)
        return size

    def truncate(self, size: int | None = None) -> int:
        try:
            return self._file.truncate(size)
        except OSError as error:
            self.error = self.error or error
            return self._file.tell() if size is None else size

    def flush(self) -> None:
        return None

    def release(self) -> OSError | None:
        """Close the file; the first failure of the whole write, or None."""
        try:
            os.fsync(self._file.fileno())
        except OSError as error:
            self.error = self.error or error
        self._file.close()
        return self.error


@contextmanager
def atomic_hdf5(final: str | Path, **options) -> Iterator[h5py.File]:
    """An HDF5 file open for writing under a temporary name, renamed to `final` when complete;
    a failure to write (full disk, file size limit) is one PipelineError naming `final`."""
    import h5py

    with atomic_file(final) as tmp:
        sink = _GuardedFile(tmp)
        try:
            with h5py.File(sink, "w", **options) as handle:
                yield handle
        finally:
            failure = sink.release()
        if failure is not None:
            raise write_failure(Path(final), failure)
