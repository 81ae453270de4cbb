"""The sequence filters' parameters: defaults, and those ``visloc tune`` or the build's self-calibration stored in
the map's ``map.yaml`` (section ``sequence``), with a one-line summary of where they came from for the logs."""
from __future__ import annotations

from dataclasses import dataclass, replace

from .localizer import DENSE_MAX


@dataclass(frozen=True)
class FilterParams:
    particles: int = 4000
    beta: float = 1.0             # log-likelihood per unit of evidence (z-score) without odometry
    beta_odom: float = 3.0        # ... with odometry (sharp, but bounded by odom_floor)
    odom_floor: float = 1.0       # with odometry: one frame favours a particle at most (1 + 1/floor) x
    dense_max: int = DENSE_MAX    # maps up to this many places are scored in full every frame
    candidates: int = 1000        # places scored through the index on larger maps
    reset_fraction: float = 0.03  # particles re-drawn around the candidates each frame
    reset_fraction_lost: float = 0.1  # ... while the main mode holds less than half the weight
    reset_fraction_max: float = 0.5   # ... at most, when the frames stop agreeing with the belief (augmented MCL)
    aug_fast: float = 0.5             # rates of the fast and slow averages of the particles' likelihood
    aug_slow: float = 0.05
    obs_sigma_spacings: float = 1.5  # sequence matching (with odometry): spread of a candidate carried along it
    pos_noise_spacings: float = 0.5   # without odometry, per frame, for the most agile particles
    vel_noise_spacings: float = 0.3   # (each particle carries an agility factor, log-uniform in
    min_agility: float = 0.2          # [min_agility, max_agility], learnt by resampling: steady streams
    max_agility: float = 1.0          # and jumpy ones)
    init_speed_spacings: float = 2.0
    seed_sigma_spacings: float = 0.5  # spread of re-seeded particles around their place (and of their velocity)
    path_sigma_spacings: float = 1.0  # the robot is on the mapped path, within about this distance of a place
    far_spacings: float = 3.0     # a particle farther than this from every place gets the worst place's evidence
    odom_noise: float = 0.1       # relative error of an odometry step (scale and heading)
    odom_noise_m: float = 0.02    # plus this much per frame (m)
    odom_scale_sd: float = 0.03   # prior spread of the odometry scale each particle carries
    odom_scale_walk: float = 0.002  # its drift per frame
    hub_memory: float = 0.01      # rate of each place's running mean evidence (hub suppression); 0 = off
    hub_memory_odom: float = 0.05  # ... with odometry
    hub_delay: int = 0            # frames a frame's evidence waits before it enters those running means
    hub_delay_odom: int = 10      # ... with odometry (the robot's own passage would lower the places just behind it)
    hub_prior: bool = True        # start those running means at each place's likeness to the map's own images
    verify_top: int = 5           # the frame's best places whose similarities are handed out again in the order
    #                               the candidate verification ranks them (0 = the unverified similarities)
    match_floor: float = 1.0      # sequence matching: what one past frame can say about a hypothesis is bounded
    mode_radius_spacings: float = 4.0  # the estimate: mean shift over particles within this radius
    fine_radius_spacings: float = 1.0  # ... then within this radius for the reported position
    min_track_mass: float = 0.2   # the tracked mode is kept only while it holds this share of the weight
    switch_ratio: float = 3.0     # another mode must hold this many times the tracked mode's weight to take over
    seed_beta: float = 1.0        # sharper weights of the best places when re-seeding and sequence matching
    hypotheses: int = 20          # best places per frame used for re-seeding and the sequence matching
    history: int = 30             # frames of candidates kept for sequence-consistent re-seeding (with odometry)
    alias_window: int = 40        # with odometry: frames of evidence over which the tracked position is compared
    #                               with distant alternatives carried along the same odometry (0 = off)
    alias_memory: float = 200.0   # the kept alternative's score forgets at 1 / this per frame; frames kept for it
    alias_radius_spacings: float = 12.0  # an alternative lies at least this far from the tracked position
    alias_switch: float = 28.0    # the filter moves to an alternative whose score passes this
    alias_confirm: int = 3        # ... on this many frames in a row
    alias_drop: float = 30.0      # an alternative whose score falls below -this is forgotten
    alias_temperature: float = 4.0  # the alternative's share of the belief: 1 / (1 + exp(-score / this)) ...
    alias_share: float = 0.05     # ... taken into the covariance from this share up
    cov_scale: float = 1.0        # the reported covariance x this (fitted by `visloc tune`), without odometry
    cov_scale_odom: float = 1.0   # ... with odometry
    seed: int = 0
    kind: str = "places"          # the filter without odometry: "places" (PlaceFilter) or "particles" (SequenceFilter)
    kind_odom: str = "particles"  # ... with odometry
    beta_places: float = 1.0      # places: log-belief per unit of evidence
    place_reach_spacings: float = 3.0  # places: without odometry the robot moves at most this far per frame
    place_reach_odom_spacings: float = 1.5  # ... with odometry, from where the odometry carries each place
    place_jump: float = 0.01      # places: the chance per frame of a jump anywhere (a kidnapped robot)
    place_temperature: float = 0.25  # places: the covariance weighs each place by exp(log-belief / this)
    cov_scale_places: float = 1.0  # places: the reported covariance x this (self-calibrated, or `visloc tune`)
    place_switch: float = 0.05    # places, without odometry: a path's chance per frame to switch between the agile
    #                               and the steady model (0 = agile only)
    place_velocity_sigma_spacings: float = 0.75  # ... the steady model's spread of a step about the velocity
    place_speed_rate: float = 0.15  # ... how fast the speed a path carries follows its steps (slowly: a pace)
    place_heading_rate: float = 0.5  # ... and its heading (quickly: the path turns)

    @classmethod
    def for_map(cls, meta: dict, **overrides) -> "FilterParams":
        """The defaults, with the evidence strength and covariance scale that ``visloc tune`` stored in the map's
        ``map.yaml`` (section ``sequence``: ``without_odometry`` / ``with_odometry``), then ``overrides``."""
        kw = {}
        for mode, suffix in (("without_odometry", ""), ("with_odometry", "_odom")):
            fitted = ((meta or {}).get("sequence") or {}).get(mode) or {}
            if "filter" in fitted:  # the map's choice for this mode (`visloc tune`)
                kw["kind" + suffix] = fitted["filter"]
            kind = fitted.get("filter", "particles")  # the kind the top-level fit is for (self-calibration: particles)
            kinds = dict(fitted.get("by_filter") or {})  # `visloc tune` keeps the fit of every kind it tried
            kinds.setdefault(kind, {k: fitted[k] for k in ("evidence", "cov_scale") if k in fitted})
            if "cov_scale_places" in fitted:  # the build's self-calibration of the place filter
                kinds.setdefault("places", {"cov_scale": fitted["cov_scale_places"]})
            for name, f in kinds.items():
                sfx = "_places" if name == "places" else suffix
                if "evidence" in f:
                    kw["beta" + sfx] = float(f["evidence"])
                if "cov_scale" in f:
                    kw["cov_scale" + sfx] = float(f["cov_scale"])
        return replace(cls(**kw), **overrides)


def fit_summary(meta: dict, kind: str | None = None) -> str:
    """Which filter runs in each mode and where its covariance scale (and evidence strength) come from, in one line
    for the logs; ``kind``: the user's override of both (``--filter``, ``sequence_filter``), said at the end."""
    p = FilterParams.for_map(meta)
    parts = []
    for mode, mode_kind in (("without_odometry", p.kind), ("with_odometry", p.kind_odom)):
        f = ((meta or {}).get("sequence") or {}).get(mode) or {}
        if "evidence" in f:
            src = f"evidence {f['evidence']:g}, tuned on {f.get('tuned_on', 'a labelled run')}"
        elif "cov_scale" in f:
            src = "self-calibrated at build" if "skipped" not in f else f"not calibrated: {f['skipped']}"
        else:
            src = "default"
        scale = (p.cov_scale_places if mode_kind == "places" else p.cov_scale_odom if mode == "with_odometry"
                 else p.cov_scale)
        parts.append(f"{mode.replace('_', ' ')}: {mode_kind}, covariance scale {scale:g} ({src})")
    return "; ".join(parts) + (f"; running the {kind} filter" if kind else "")
