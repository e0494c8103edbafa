"""The one-call entry point: ``modelport.register(model, name=…)``."""

from __future__ import annotations

import os
from typing import Any

from modelport.core.config import Settings
from modelport.registry.records import ModelVersion
from modelport.registry.service import Registry


def register(
    model: Any,
    name: str,
    *,
    sample_input: Any = None,
    registry: Registry | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> ModelVersion:
    """Register a model — a live object or a file/directory path — as the next version.

    Uses ``registry`` if given, else the one ``settings`` (default: the environment)
    describe. Other keyword arguments go to :meth:`Registry.register` or
    :meth:`Registry.register_object` (``description``, ``tags``, ``trust`` …).

    Example:
        >>> import modelport
        >>> v = modelport.register(pipe, name="cancer", sample_input=X[:10])  # doctest: +SKIP
        >>> v.ref, v.framework                                              # doctest: +SKIP
        ('cancer:1', 'sklearn')
    """
    reg = registry or Registry.from_settings(settings or Settings())
    try:
        if isinstance(model, str | os.PathLike):
            return reg.register(model, name, sample_input=sample_input, **options)
        return reg.register_object(model, name, sample_input=sample_input, **options)
    finally:
        if registry is None:
            reg.close()
