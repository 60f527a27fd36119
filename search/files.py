"""Small file helpers shared by the commands."""

from __future__ import annotations

from pathlib import Path

from adder.errors import UserError


def writable_dir(path: Path, what: str = "output folder") -> Path:
    """Make ``path`` (and parents) and prove it can be written, or raise one clear UserError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(
            f"{what} {str(path)!r} cannot be written ({e.strerror}); expected a writable folder"
        ) from None
    return path
