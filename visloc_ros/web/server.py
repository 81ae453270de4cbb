"""``visloc serve``: the map as a web page, and "where was this photo taken" for one uploaded photo.

A FastAPI app (served by uvicorn) over one loaded :class:`~visloc_ros.core.localizer.Localizer`:

- ``GET /``: the page (``static/index.html``, ``app.js``, ``style.css``: served by the app itself, nothing fetched
  from elsewhere, no tile server);
- ``GET /api/map``: what the map is (places, SOM cells, datum, models);
- ``GET /api/places``: every place (position, lat/lon, heading, SOM cell, condition, session);
- ``GET /api/places/{id}/image``: a place's own image (JPEG; ``?thumb=1`` at most 160 px): images are looked up by
  place id in the map, never by a path from the request;
- ``POST /api/localize``: one photo (multipart, field ``image``): the fix (the verified one on maps with learned
  keypoints), its 95 % ellipse, heading, the 5 best candidates and the time taken;
- ``GET /healthz``.

Requests over the size limit get 413 (from their ``Content-Length``, before the body is read; a body without one
gets 411), what does not decode as an image 415, a request without a photo 400. The localizer answers one request
at a time (a lock): concurrent uploads queue instead of sharing its state.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..core.errors import ImageError, MapError, VislocError
from ..core.localizer import Fix, Localizer
from ..core.pose import CHI2_2D_95, yaw_from_quat
from ..core.preprocess import decode_compressed

STATIC = Path(__file__).with_name("static")
MAX_UPLOAD_MB = 20.0
CANDIDATES = 5  # candidates listed with an answer
THUMB_PX = 160


def ellipse95(cov2: np.ndarray) -> dict:
    """The 95 % ellipse of a 2x2 position covariance: semi-axes (m) and the major axis' angle (rad, from east,
    counter-clockwise)."""
    c = np.asarray(cov2, np.float64).reshape(2, 2)
    if not np.isfinite(c).all():
        return {"major_m": None, "minor_m": None, "angle_rad": None}
    w, v = np.linalg.eigh(0.5 * (c + c.T))
    w = np.maximum(w, 0.0)
    return {"major_m": float(np.sqrt(CHI2_2D_95 * w[1])), "minor_m": float(np.sqrt(CHI2_2D_95 * w[0])),
            "angle_rad": float(np.arctan2(v[1, 1], v[0, 1]))}


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


class MapService:
    """What the app serves, computed once from the map; :meth:`localize` is safe to call from many threads."""

    def __init__(self, localizer: Localizer):
        self.loc = localizer
        m = localizer.map
        self.map_dir = Path(m.path)
        p = m.places
        root = Path(m.meta.get("image_root", "."))
        self._paths = [Path(i) if Path(i).is_absolute() else root / i for i in p.images]
        yaws = None if p.quat is None or np.isnan(p.quat).any() else yaw_from_quat(p.quat)
        cells = localizer.index.cells
        self.places = [{
            "id": i, "image": str(p.images[i]),
            "x": float(p.xyz[i, 0]), "y": float(p.xyz[i, 1]), "z": float(p.xyz[i, 2]),
            "lat": None if p.latlonalt is None else _num(p.latlonalt[i, 0]),
            "lon": None if p.latlonalt is None else _num(p.latlonalt[i, 1]),
            "yaw_deg": None if yaws is None else round(float(np.degrees(yaws[i])), 2),
            "cell": int(cells[i]),
            "condition": (p.condition[i] if p.condition else "") or "",
            "session": p.session[i] if i < len(p.session) else "",
        } for i in range(len(p))]
        som = m.meta.get("som") or {}
        rows, cols = int(som.get("rows", m.codebook.shape[0])), int(som.get("cols", m.codebook.shape[1]))
        kp = m.meta.get("keypoints") or {}
        self.summary = {
            "name": self.map_dir.name, "path": str(self.map_dir.resolve()), "places": len(p),
            "cells": {"rows": rows, "cols": cols, "used": len(set(int(c) for c in cells))},
            "frame_id": m.meta.get("frame_id", "map"), "georeferenced": localizer.georeferenced,
            "datum": m.meta.get("datum"), "sessions": m.meta.get("sessions", []),
            "extent_m": {"x": [float(p.xyz[:, 0].min()), float(p.xyz[:, 0].max())],
                         "y": [float(p.xyz[:, 1].min()), float(p.xyz[:, 1].max())]},
            "models": {"cnn": {k: m.meta.get("cnn", {}).get(k) for k in ("file", "sha256", "dim")},
                       "encoder": {k: m.meta.get("encoder", {}).get(k) for k in ("file", "sha256", "latent_dim")},
                       "keypoints": {k: kp.get(k) for k in ("extractor", "count", "sha256")} if kp else None,
                       "backend": localizer.backend_name},
            "verified": localizer.verifies_keypoints,
        }
        self._lock = threading.Lock()

    def image_path(self, place: int) -> Path:
        if not 0 <= place < len(self._paths):
            raise KeyError(place)
        return self._paths[place]

    def image_jpeg(self, place: int, thumb: bool) -> bytes:
        """A place's image as JPEG bytes (``thumb``: the long side at most :data:`THUMB_PX`)."""
        img = cv2.imread(str(self.image_path(place)), cv2.IMREAD_COLOR)
        if img is None:
            raise ImageError(f"place {place}'s image {self._paths[place]} cannot be read")
        if thumb and max(img.shape[:2]) > THUMB_PX:
            s = THUMB_PX / max(img.shape[:2])
            img = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                             interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise ImageError(f"place {place}'s image cannot be encoded")
        return buf.tobytes()

    def localize(self, data: bytes) -> dict:
        """One photo's bytes -> the answer (JSON-ready). Raises :class:`ImageError` for what is not an image."""
        t0 = time.perf_counter()
        rgb = decode_compressed(data)
        t_decode = (time.perf_counter() - t0) * 1e3
        with self._lock:
            t1 = time.perf_counter()
            fix = self.loc.localize(rgb)
            if self.loc.verifies_keypoints and fix.ok:
                fix = self.loc.verify_fix(rgb, fix)
            t_loc = (time.perf_counter() - t1) * 1e3
        out = self.answer(fix)
        out["timings_ms"] = {**{k: round(float(v), 2) for k, v in fix.timings_ms.items() if k != "decode"},
                             "decode": round(t_decode, 2), "localizer": round(t_loc, 2)}
        out["image"] = {"width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "bytes": len(data)}
        return out

    def answer(self, fix: Fix) -> dict:
        n = min(CANDIDATES, len(fix.candidate_ids))
        inl = fix.inliers if fix.inliers is not None else np.zeros(0)
        cands = []
        for j in range(n):
            pid = int(fix.candidate_ids[j])
            pl = self.places[pid]
            cands.append({"rank": j + 1, "id": pid, "image": pl["image"], "x": pl["x"], "y": pl["y"],
                          "lat": pl["lat"], "lon": pl["lon"], "cell": pl["cell"],
                          "similarity": round(float(fix.candidate_scores[j]), 4),
                          "inliers": int(inl[j]) if j < len(inl) else None,
                          "thumbnail": f"/api/places/{pid}/image?thumb=1"})
        return {
            "ok": bool(fix.ok), "state": fix.state, "message": fix.message, "verified": bool(fix.verified),
            "x": float(fix.xyz[0]), "y": float(fix.xyz[1]), "z": float(fix.xyz[2]),
            "lat": _num(fix.lat), "lon": _num(fix.lon),
            "yaw_deg": _num(np.degrees(fix.yaw)),
            "cov_xy": [[_num(v) for v in row] for row in np.asarray(fix.cov2).reshape(2, 2)],
            "ellipse95": ellipse95(fix.cov2),
            "score": _num(fix.score), "best_place": int(fix.best_id), "cell": int(fix.cell),
            "condition": fix.condition, "candidates": cands,
        }


def create_app(service: MapService, max_upload_mb: float = MAX_UPLOAD_MB):
    """The FastAPI app over ``service`` (no OpenAPI UI: it would load scripts from a CDN)."""
    limit = int(max_upload_mb * 1024 * 1024)
    app = FastAPI(title="visloc_ros map", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def one_line(request, exc):  # {"error": "..."}: one readable line, as the CLI gives
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request, exc):
        e = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in e.get("loc", ()))
        return JSONResponse({"error": f"{where}: {e.get('msg', 'invalid request')}"}, status_code=422)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "places": service.summary["places"]}

    @app.get("/api/map")
    def api_map():
        return service.summary

    @app.get("/api/places")
    def api_places():
        return service.places

    @app.get("/api/places/{place}/image")
    def api_place_image(place: int, thumb: bool = False):
        try:
            data = service.image_jpeg(place, thumb)
        except KeyError:
            raise HTTPException(404, f"no place {place} in this map ({len(service.places)} places)") from None
        except ImageError as e:
            raise HTTPException(404, str(e)) from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/localize")
    async def api_localize(request: Request):
        length = request.headers.get("content-length")
        if length is None:
            raise HTTPException(411, "send the photo with a Content-Length (a multipart form, field 'image')")
        try:
            n = int(length)
        except ValueError:
            raise HTTPException(400, f"bad Content-Length {length!r}") from None
        if n > limit:
            raise HTTPException(413, f"upload of {n / 1e6:.1f} MB is over the limit of {max_upload_mb:g} MB")
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise HTTPException(400, "send the photo as multipart/form-data in the field 'image' "
                                     "(curl -F image=@photo.jpg)")
        try:
            form = await request.form(max_files=1, max_fields=10)
        except Exception as e:  # a malformed multipart body
            raise HTTPException(400, f"cannot read the multipart form: {e}") from None
        f = form.get("image")
        if f is None or isinstance(f, str):
            raise HTTPException(400, "no photo: send it in the multipart field 'image'")
        data = await f.read()
        await form.close()
        if len(data) > limit:
            raise HTTPException(413, f"photo of {len(data) / 1e6:.1f} MB is over the limit of {max_upload_mb:g} MB")
        if not data:
            raise HTTPException(400, "the photo is empty (0 bytes)")
        t0 = time.perf_counter()
        try:
            out = await run_in_threadpool(service.localize, data)
        except ImageError as e:
            raise HTTPException(415, f"not a readable image ({f.filename or 'upload'}): {e}") from None
        except VislocError as e:
            raise HTTPException(500, str(e)) from None
        out["timings_ms"]["server"] = round((time.perf_counter() - t0) * 1e3, 2)
        out["filename"] = f.filename
        return out

    return app


def serve(map_dir: str | Path, host: str = "127.0.0.1", port: int = 8080, max_upload_mb: float = MAX_UPLOAD_MB,
          config=None, log_level: str = "info") -> None:
    """Load the map and serve it until interrupted (uvicorn)."""
    import uvicorn

    if not Path(map_dir).is_dir():
        raise MapError(f"map folder {map_dir} does not exist")
    loc = Localizer(map_dir, config)
    service = MapService(loc)
    if loc.verifies_keypoints:  # load the keypoint extractor now, not on the first upload
        loc.keypoint_extractor()
    try:
        uvicorn.run(create_app(service, max_upload_mb), host=host, port=port, log_level=log_level)
    finally:
        loc.close()
