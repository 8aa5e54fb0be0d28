"""Reading one lyrics file: UTF-8 text or a reason why there is none."""

from __future__ import annotations

from pathlib import Path


def read_lyrics(path: Path | None) -> tuple[str | None, str]:
    """(text, problem): text None when there is no usable lyrics file, with the reason."""
    if path is None:
        return None, "no lyrics file"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        return None, f"{path.name} is not UTF-8 ({err.reason} at byte {err.start}); re-save it as UTF-8"
    except OSError as err:
        return None, f"{path.name} unreadable ({err})"
    text = " ".join(text.split())
    return (text, "") if text else (None, f"{path.name} is empty")
