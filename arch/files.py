"""Output directories: checked before any work, written all or nothing.

``check_output_dir`` is what ``build -o``, ``sim --out`` and ``sweep --out`` run before they start, so
a bad path is refused in a fraction of a second instead of after a long build or simulation.
``write_all_or_nothing`` stages every file in a sibling temporary directory and moves them into place
only when all were written; a failure leaves the previous outputs as they were and creates no empty
directory.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Mapping

from .errors import ArchgenError, SpecError, problem

__all__ = ["check_output_dir", "write_all_or_nothing"]

_SYSTEM_ROOTS = ("/proc", "/sys", "/dev")


def check_output_dir(path: str | Path, flag: str) -> Path:
    """The directory ``path`` can hold outputs: it is a directory or can be created as one, writably."""
    text = str(path)
    if not text.strip():
        raise SpecError([problem(flag, "an output directory is needed, e.g. out/run1", text)])
    if "\0" in text:
        raise SpecError([problem(flag, "a path cannot contain a NUL character", text)])
    p = Path(text).expanduser()
    resolved = p.resolve()
    for root in _SYSTEM_ROOTS:
        if resolved == Path(root) or Path(root) in resolved.parents:
            raise SpecError([problem(flag, f"{resolved} is inside {root}, a system directory, not a place for "
                                     "outputs; choose a directory of your own", text)])
    if p.exists() and not p.is_dir():
        raise SpecError([problem(flag, "exists and is not a directory; give a directory (it is created if missing)",
                                 text)])
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise SpecError([problem(flag, f"{probe} is a file, so no directory can be made below it", text)])
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SpecError([problem(flag, f"{probe} is not writable; choose another directory", text)])
    return p


def write_all_or_nothing(out_dir: str | Path, files: Mapping[str, str | bytes | Callable[[Path], None]]) -> dict[str, Path]:
    """Write ``files`` (name -> text, bytes, or a function that writes the given path) into ``out_dir``.

    Everything is written to a staging directory next to ``out_dir`` first; only then are the files
    moved into place (each an atomic rename). A failure raises ArchgenError naming the directory and
    leaves ``out_dir`` as it was (and does not create it)."""
    out_dir = Path(out_dir)
    created_parent = None
    try:
        parent = out_dir.parent
        if not parent.exists():
            created_parent = parent
            while not created_parent.parent.exists():
                created_parent = created_parent.parent
            parent.mkdir(parents=True)
        stage = Path(tempfile.mkdtemp(prefix=".archgen-stage-", dir=parent))
        try:
            for name, content in files.items():
                target = stage / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    target.write_bytes(content)
                elif isinstance(content, str):
                    target.write_text(content)
                else:
                    content(target)
            out_dir.mkdir(exist_ok=True)
            written = {}
            for name in files:
                dest = out_dir / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(stage / name, dest)
                written[name] = dest
            created_parent = None
            return written
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    except OSError as err:
        where = err.filename or out_dir
        raise ArchgenError(f"cannot write the outputs to {out_dir}: {err.strerror} ({where}); "
                           "choose another directory") from None
    finally:
        if created_parent is not None:
            shutil.rmtree(created_parent, ignore_errors=True)
