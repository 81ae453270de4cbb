import numpy as np

from visloc_ros.core.localizer import Localizer
from visloc_ros.core.map_db import load_map
from visloc_ros.core.synthetic import draw_scene, view
from visloc_ros.core.temporal import FilterParams, SequenceFilter


def test_tracks_a_sequence_and_recovers_after_kidnapping(xy_map):
    loc = Localizer(xy_map)
    places = load_map(xy_map).places
    seed_of = {name: int(name.split("/")[1][:5]) for name in places.images}
    rng = np.random.default_rng(0)
    filt = SequenceFilter(loc, FilterParams(particles=500, seed=0))
    order = list(range(0, 12)) + list(range(20, 30))  # kidnapped from place 11 to place 20
    errs = []
    for i in order:
        img = view(draw_scene(1 * 100003 + seed_of[places.images[i]]), rng, night=False)
        f = filt.update(img)
        errs.append(np.linalg.norm(f.xyz[:2] - places.xyz[i, :2]))
        assert np.all(np.linalg.eigvalsh(f.cov2) > 0)
    errs = np.array(errs)
    assert np.median(errs[3:12]) < 2.0          # tracking
    assert np.all(errs[12 + 5:] < 3.0)          # recovered within 5 frames of the jump
