"""Sequence localization: ``make_filter`` builds the map's sequence filter for each mode (:class:`FilterByMode`):
untuned, the place filter (:mod:`.place_filter`) without odometry and the particle filter (:mod:`.particle_filter`)
with it (the particles carry the odometry's own error better: the night tunnel), or what ``visloc tune`` chose."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .config import FILTER_KINDS
from .filter_params import FilterParams
from .localizer import Embedding, Fix, Localizer
from .particle_filter import SequenceFilter
from .place_filter import PlaceFilter


def make_filter(localizer: Localizer, params: FilterParams | None = None,
                kind: str | None = None) -> "SequenceFilter | PlaceFilter | FilterByMode":
    """The sequence filter: ``params.kind`` without odometry, ``params.kind_odom`` with it (default: the map's tuned
    parameters and choices; untuned maps: places without odometry, particles with it), or ``kind`` in both modes
    when one is given (a user's override: ``--filter``, the node's ``sequence_filter``)."""
    params = params or FilterParams.for_map(localizer.map.meta)
    if kind:
        params = replace(params, kind=kind, kind_odom=kind)
    for k in (params.kind, params.kind_odom):
        if k not in FILTER_KINDS:
            raise ValueError(f"unknown sequence filter {k!r} (expected one of {', '.join(FILTER_KINDS)})")
    if params.kind != params.kind_odom:
        return FilterByMode(localizer, params)
    return (PlaceFilter if params.kind == "places" else SequenceFilter)(localizer, params)


class FilterByMode:
    """Two filters, one per mode: frames that come with odometry go to ``kind_odom``'s, frames without it to
    ``kind``'s. Only the filter of the frame's mode runs; when the mode changes (odometry starts or stops), the
    filter taking over starts afresh from the frames that follow (a kidnapping-like recovery, a few frames)."""

    def __init__(self, localizer: Localizer, params: FilterParams):
        kinds = {"places": PlaceFilter, "particles": SequenceFilter}
        self.p = params
        without = kinds[params.kind](localizer, params)
        self.filters = {False: without, True: kinds[params.kind_odom](localizer, params, tables_from=without)}
        self.mode = None

    def reset(self) -> None:
        for f in self.filters.values():
            f.reset()
        self.mode = None

    def _pick(self, odom: bool) -> "SequenceFilter | PlaceFilter":
        if self.mode is not None and self.mode != odom:
            self.filters[odom].reset()
        self.mode = odom
        return self.filters[odom]

    def update(self, image: np.ndarray, odom_pose=None, stamp: float | None = None,
               odom_delta: np.ndarray | None = None) -> Fix:
        odom = odom_pose is not None or odom_delta is not None
        return self._pick(odom).update(image, odom_pose, stamp, odom_delta)

    def update_embedding(self, emb: Embedding, odom_pose=None, stamp: float | None = None,
                         odom_delta: np.ndarray | None = None, sims: np.ndarray | None = None) -> Fix:
        odom = odom_pose is not None or odom_delta is not None
        return self._pick(odom).update_embedding(emb, odom_pose, stamp, odom_delta, sims)
