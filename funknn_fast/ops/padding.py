"""Padding modes of ``patch_sample`` and their integer codes in the compiled kernels."""

from __future__ import annotations

PADDING_CODES: dict[str, int] = {"zeros": 0, "border": 1, "reflection": 2}


def padding_code(padding: str) -> int:
    """Integer code of a padding name; raises ValueError naming the choices."""
    try:
        return PADDING_CODES[padding]
    except (KeyError, TypeError):
        raise ValueError(
            f"padding must be one of {sorted(PADDING_CODES)}, got {padding!r}"
        ) from None
