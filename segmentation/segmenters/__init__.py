"""Segmenters: one module per clustering algorithm, each registering itself (see :mod:`.base`).

Every module of this package is imported here, so adding an algorithm is adding one module whose class is
decorated with :func:`register`: the job file's ``clustering.algorithm``, the CLI's ``--algorithm``,
:func:`make_segmenter` and :func:`load` know it from then on.
"""

import importlib
import pkgutil

from .base import (
    Segmenter,
    algorithm_name,
    algorithms,
    canonical_name,
    load,
    make_segmenter,
    register,
    segmenter_class,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "Segmenter",
    "algorithm_name",
    "algorithms",
    "canonical_name",
    "load",
    "make_segmenter",
    "register",
    "segmenter_class",
]
