"""The Lambda layers of the four functions: recipes (data) and their pip build, without Docker.

:mod:`layers.recipes` says what each layer holds and which layers each function attaches;
:mod:`layers.build` (``python -m layers.build``) builds them into ``build/layers``. The CDK app
uses :data:`~layers.recipes.FUNCTION_LAYERS` and :func:`~layers.recipes.layer_path`.
Design and measured sizes: ``docs/layers.md``.
"""

from layers.recipes import FUNCTION_LAYERS, LAYERS, layer_path

__all__ = ["FUNCTION_LAYERS", "LAYERS", "layer_path"]
