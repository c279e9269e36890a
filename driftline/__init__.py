"""driftline: batch ML-model monitoring. The Python API (docs/contract.md, "Python API") is
imported on first use, so importing the package for its command line stays cheap."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from driftline.api import (
        get_policy,
        monitor_day,
        register_model,
        set_policy,
        write_batch,
        write_labels,
    )

__all__ = [
    "get_policy",
    "monitor_day",
    "register_model",
    "set_policy",
    "write_batch",
    "write_labels",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from driftline import api

        return getattr(api, name)
    raise AttributeError(f"module 'driftline' has no attribute {name!r}")
