"""The in-page 3-D comparison view: render's plotly painting of the scene, kept across reruns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from tumorscope.render import plotly_scene
from tumorscope.render.layers import SceneOptions


def comparison_figure(
    truth: Mapping[str, Any] | None,
    prediction: Mapping[str, Any] | None,
    *,
    brain: Any | None = None,
    errors: Mapping[str, Any] | None = None,
    dice: Mapping[str, float] | None = None,
    options: SceneOptions | None = None,
    revision: str = "",
    height_px: int = 640,
) -> go.Figure:
    """The patient page's scene: the layers render's PNG and HTML exports paint too
    (:func:`tumorscope.render.plotly_scene.comparison_figure`), ``height_px`` tall.

    ``revision`` (with the camera preset) keeps the user's rotation across reruns until
    either changes: a toggle or a slider redraws the surfaces, not the view.

    >>> import pyvista as pv
    >>> fig = comparison_figure({"ET": pv.Sphere(radius=5.0)}, {"ET": pv.Sphere(radius=4.0)},
    ...                         dice={"ET": 0.8}, options=SceneOptions(truth_opacity=0.7))
    >>> [(t.name, t.opacity) for t in fig.data]
    [('prediction ET · Dice 0.80', 1.0), ('truth ET', 0.7)]
    """
    options = options or SceneOptions()
    return plotly_scene.comparison_figure(
        truth, prediction, brain=brain, errors=errors, dice=dice, options=options,
        height_px=height_px, uirevision=f"{revision}|{options.camera}")
