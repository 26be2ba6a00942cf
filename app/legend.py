"""Legend chips of the pages (HTML for ``st.markdown(..., unsafe_allow_html=True)``), in
render.style's colours: a filled swatch, a line (solid or dashed), a heat ramp."""

from __future__ import annotations

from tumorscope.render import slices, style


def swatch(colour: style.Colour, text: str) -> str:
    """A filled square of ``colour`` before ``text``.

    >>> "#ff8c00" in swatch(style.ERROR_COLOURS["A_only"], "only A")
    True
    """
    return (f"<span style='display:inline-block;width:0.9em;height:0.9em;"
            f"background:{colour.hex};border-radius:2px;margin:0 0.3em 0 0.9em;"
            f"vertical-align:-0.1em'></span>{text}")


def line(colour: style.Colour, text: str, *, dashed: bool = False) -> str:
    """A short solid or dashed line of ``colour`` before ``text`` (an outline's key)."""
    kind = "dashed" if dashed else "solid"
    return (f"<span style='display:inline-block;width:1.6em;height:0;border-top:3px {kind} "
            f"{colour.hex};margin:0 0.35em 0 0.9em;vertical-align:0.2em'></span>{text}")


def ramp(text: str) -> str:
    """The heat maps' colour ramp before ``text``."""
    colours = ", ".join(slices.heat_ramp_hex())
    return (f"<span style='display:inline-block;width:4em;height:0.9em;"
            f"background:linear-gradient(to right, {colours});border-radius:2px;"
            f"margin:0 0.3em 0 0.9em;vertical-align:-0.1em'></span>{text}")
