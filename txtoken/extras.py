"""Optional dependencies: the one check that names the ``pip install 'txtoken[...]'`` extra a feature needs.

The core needs only pyjwt, cryptography, pydantic and httpx. Each integration imports its framework inside
:func:`requires_extra`, so a missing one fails with the extra to install instead of a bare ``ModuleNotFoundError``::

    with requires_extra("asgi", "txtoken_asgi (the ASGI middleware)"):
        from starlette.types import ASGIApp
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["MissingExtra", "requires_extra"]


class MissingExtra(ImportError):
    """A feature's optional dependency is not installed; the message says which extra installs it."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the {extra!r} extra (module {module!r} is not installed): pip install 'txtoken[{extra}]'",
            name=module,
        )
        self.extra = extra


@contextmanager
def requires_extra(extra: str, feature: str) -> Iterator[None]:
    """Turn a missing module imported in the block into :class:`MissingExtra` naming ``extra`` and ``feature``.

    Nested checks name the outermost feature: its extra installs everything inside. A missing txtoken module is a
    broken install, not a missing extra, and an installed module that fails to import keeps its own error.
    """
    try:
        yield
    except (ModuleNotFoundError, MissingExtra) as exc:
        module = exc.name or "?"
        if module.startswith("txtoken"):
            raise
        raise MissingExtra(feature, extra, module) from exc
