"""The activation layouts: "NCHW" (channels before the image, the default) and "NHWC" (channels
last). Weights are (out_channels, in_channels/groups, kh, kw) in both."""

from typing import Tuple

from ._shown import shown

LAYOUTS = ("NCHW", "NHWC")


def layout_of(value, name: str = "layout") -> str:
    """The layout named by value ("NCHW" or "NHWC", in any case); ValueError naming `name` else."""
    if value == "NCHW" or value == "NHWC":  # (the common spelling, without a new string)
        return value
    if isinstance(value, str) and value.upper() in LAYOUTS:
        return value.upper()
    raise ValueError(f"{name}: expected 'NCHW' or 'NHWC', got {shown(value)}")


def to_nchw_shape(shape: Tuple[int, ...], layout: str) -> Tuple[int, ...]:
    """(N, C, H, W) from a 4-D shape in `layout`."""
    if layout == "NHWC":
        n, h, w, c = shape
        return (n, c, h, w)
    return tuple(shape)


def from_nchw_shape(shape: Tuple[int, ...], layout: str) -> Tuple[int, ...]:
    """A 4-D (N, C, H, W) shape written in `layout`."""
    if layout == "NHWC":
        n, c, h, w = shape
        return (n, h, w, c)
    return tuple(shape)


def shape_text(layout: str, batched: bool = True) -> str:
    """The dimension names of an activation in `layout`: "(N, C, H, W)" or "(N, H, W, C)"."""
    dims = "H, W, C" if layout == "NHWC" else "C, H, W"
    return f"(N, {dims})" if batched else f"({dims})"


def channels_axis(layout: str) -> int:
    """The axis of the channels in a 4-D activation of `layout`."""
    return 3 if layout == "NHWC" else 1
