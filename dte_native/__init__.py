"""dte_native: Chilean electronic invoicing (SII DTE) with a C++ core."""
from __future__ import annotations

from . import _core

__version__: str = _core.__version__
