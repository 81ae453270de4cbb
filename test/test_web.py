"""`visloc serve`: the JSON API against a real server process over loopback HTTP, and the page in a real headless
browser (Debian's chromium + chromium-driver; skipped with the reason where they are not installed)."""
from __future__ import annotations

import csv
import http.client
import importlib.util
import json
import os
import shutil
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_visloc

from visloc_ros.web.server import ellipse95

LIMIT_MB = 0.5


def _bench_serve():
    spec = importlib.util.spec_from_file_location("bench_serve", REPO / "benchmarks" / "bench_serve.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_bench = _bench_serve()
start_server = _bench.start  # `visloc serve --port 0` in its own process; (process, base URL)
multipart = _bench.multipart


def request(url: str, data: bytes | None = None, ctype: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": ctype} if ctype else {})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def upload(base: str, data: bytes, field: str = "image", filename: str = "photo.jpg") -> tuple[int, dict]:
    body, ctype = multipart(field, filename, data)
    code, _, out = request(base + "/api/localize", body, ctype)
    return code, json.loads(out)


def rows(csv_path: Path) -> list[dict]:
    with open(csv_path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def server(geo_map):
    proc, url = start_server(geo_map, "--max-upload-mb", str(LIMIT_MB))
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_ellipse95_axes_and_angle():
    e = ellipse95(np.diag([4.0, 1.0]))
    assert e["major_m"] == pytest.approx(np.sqrt(5.991464547 * 4)) and e["minor_m"] == pytest.approx(np.sqrt(5.991464547))
    assert abs(np.sin(e["angle_rad"])) < 1e-9  # the major axis lies east-west
    e = ellipse95(np.diag([1.0, 9.0]))
    assert abs(np.cos(e["angle_rad"])) < 1e-9 and e["major_m"] == pytest.approx(3 * np.sqrt(5.991464547))
    assert ellipse95(np.full((2, 2), np.nan))["major_m"] is None


def test_health_map_and_places(server, synth_geo):
    code, _, body = request(server + "/healthz")
    assert code == 200 and json.loads(body) == {"status": "ok", "places": 30}
    m = json.loads(request(server + "/api/map")[2])
    assert m["places"] == 30 and m["georeferenced"] and m["datum"]["lat"] == pytest.approx(31.262, abs=0.01)
    assert m["cells"]["rows"] * m["cells"]["cols"] >= m["cells"]["used"] >= 1
    assert m["models"]["cnn"]["sha256"] and m["models"]["encoder"]["sha256"]
    places = json.loads(request(server + "/api/places")[2])
    truth = rows(synth_geo[0])
    assert [p["id"] for p in places] == list(range(30))
    for p, t in zip(places, truth):
        assert p["image"] == t["image"]
        assert p["lat"] == pytest.approx(float(t["lat"]), abs=1e-7) and p["lon"] == pytest.approx(float(t["lon"]), abs=1e-7)
        assert 0 <= p["cell"] < m["cells"]["rows"] * m["cells"]["cols"]
    code, headers, jpeg = request(server + "/api/places/4/image?thumb=1")
    assert code == 200 and headers["content-type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"


def test_page_and_its_own_scripts_are_served(server):
    code, _, html = request(server + "/")
    assert code == 200 and b"/static/app.js" in html and b"/static/style.css" in html
    assert b"http://" not in html and b"https://" not in html  # nothing from elsewhere
    code, _, js = request(server + "/static/app.js")
    assert code == 200 and b"/api/localize" in js
    code, _, css = request(server + "/static/style.css")
    assert code == 200 and b"#map" in css
    # the only URL in them is the SVG namespace name (an identifier, never fetched)
    assert b"https://" not in js + css and (js + css).count(b"http://") == js.count(b"http://www.w3.org/2000/svg") == 1


def test_a_query_photo_is_localized(server, synth_geo):
    q = rows(synth_geo[1])[0]
    code, a = upload(server, (synth_geo[1].parent / q["image"]).read_bytes())
    assert code == 200, a
    assert a["ok"] and a["verified"]  # the map has learned keypoints: the verified fix
    places = json.loads(request(server + "/api/places")[2])
    err = np.hypot(*(np.array([a["x"], a["y"]]) - [places[a["best_place"]]["x"], places[a["best_place"]]["y"]]))
    assert err < 10.0  # the answer lies beside the place it chose
    assert np.isfinite([a["lat"], a["lon"]]).all() and a["lat"] == pytest.approx(float(q["lat"]), abs=5e-4)
    assert a["ellipse95"]["major_m"] >= a["ellipse95"]["minor_m"] > 0
    assert len(a["candidates"]) == 5 and [c["rank"] for c in a["candidates"]] == [1, 2, 3, 4, 5]
    assert all(c["inliers"] is not None for c in a["candidates"])
    assert a["timings_ms"]["server"] >= a["timings_ms"]["localizer"] > 0
    code, headers, _ = request(server + a["candidates"][0]["thumbnail"])
    assert code == 200 and headers["content-type"] == "image/jpeg"


def test_bad_requests_get_one_clear_line(server, tmp_path):
    def one_line(code_body, code):
        c, body = code_body
        assert c == code, body
        assert set(body) == {"error"} and "\n" not in body["error"] and body["error"]
        return body["error"]

    assert "not a readable image" in one_line(upload(server, os.urandom(5000)), 415)
    assert "not a readable image" in one_line(upload(server, b"\xff\xd8\xff\xe0" + b"\0" * 100), 415)  # a truncated JPEG
    assert "empty" in one_line(upload(server, b""), 400)
    assert "field 'image'" in one_line(upload(server, b"x" * 100, field="photo"), 400)
    code, _, body = request(server + "/api/localize", b'{"image": 1}', "application/json")
    assert code == 400 and "multipart" in json.loads(body)["error"]
    # over the limit: answered from the Content-Length, before the body is read (the server may close the
    # connection while the client still sends, as curl sees it too)
    body, ctype = multipart("image", "big.jpg", b"\xff" * int((LIMIT_MB + 0.1) * 1024 * 1024))
    host, port = server.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    c.putrequest("POST", "/api/localize")
    c.putheader("Content-Type", ctype)
    c.putheader("Content-Length", str(len(body)))
    c.endheaders()
    try:
        c.send(body)
    except (BrokenPipeError, ConnectionResetError):
        pass
    r = c.getresponse()
    assert "over the limit" in one_line((r.status, json.loads(r.read())), 413)
    c.close()
    # a body sent without a Content-Length (chunked) is refused before it is read
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    c.request("POST", "/api/localize", body=iter([b"--x\r\n"]), headers={"Content-Type": "multipart/form-data; boundary=x"},
              encode_chunked=True)
    r = c.getresponse()
    assert r.status == 411 and "Content-Length" in json.loads(r.read())["error"]
    c.close()


def test_images_only_from_the_maps_places(server):
    assert request(server + "/api/places/30/image")[0] == 404
    assert request(server + "/api/places/-1/image")[0] == 404
    host, port = server.split("//")[1].split(":")
    for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2f..%2fcore%2flocalizer.py",
                 "/api/places/..%2f..%2fetc%2fpasswd/image", "/static//etc/passwd", "/static/%2fetc%2fpasswd"):
        c = http.client.HTTPConnection(host, int(port), timeout=30)
        c.request("GET", path)  # sent as is: no client-side normalisation of the dots
        r = c.getresponse()
        body = r.read()
        assert r.status in (404, 422), (path, r.status)
        assert b"import" not in body and b"root:" not in body
        c.close()


def test_concurrent_uploads_get_the_answers_of_one_at_a_time(server, synth_geo):
    photos = [(synth_geo[1].parent / q["image"]).read_bytes() for q in rows(synth_geo[1])[:4]]
    one_by_one = [upload(server, p)[1] for p in photos]
    with ThreadPoolExecutor(8) as ex:
        together = list(ex.map(lambda i: upload(server, photos[i % 4])[1], range(16)))
    for i, a in enumerate(together):
        b = one_by_one[i % 4]
        assert a["best_place"] == b["best_place"]
        assert [a["x"], a["y"]] == pytest.approx([b["x"], b["y"]], abs=1e-6)
        assert [c["id"] for c in a["candidates"]] == [c["id"] for c in b["candidates"]]


def test_a_missing_map_is_one_line_and_exit_1(tmp_path):
    r = run_visloc("serve", "--map", str(tmp_path / "nope"), "--port", "0", timeout=60)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("visloc serve: error:")
    assert "does not exist" in r.stderr


# --- the page in a real headless browser ---

def chromium() -> tuple[str, str] | None:
    b = shutil.which("chromium") or shutil.which("chromium-browser")
    d = shutil.which("chromedriver")
    return (b, d) if b and d else None


def browser():
    """Headless chromium driven by selenium through the installed chromedriver (no driver or browser download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    b, d = chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = b
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path=d), options=opts)


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium and chromium-driver (./scripts/setup.sh installs them)")
def test_the_page_draws_the_map_and_an_uploaded_photo(server, synth_geo):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    q = rows(synth_geo[1])[1]
    drv = browser()
    try:
        drv.get(server + "/")
        wait = WebDriverWait(drv, 60)
        wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        assert len(drv.find_elements(By.CSS_SELECTOR, "#places circle.place")) == 30
        m = json.loads(request(server + "/api/map")[2])
        assert len(drv.find_elements(By.CSS_SELECTOR, "#legend-grid div")) == m["cells"]["rows"] * m["cells"]["cols"]
        drv.find_element(By.CSS_SELECTOR, "#places circle.place[data-id='3']").click()
        wait.until(lambda d: d.find_element(By.ID, "place").is_displayed())
        assert "cell" in drv.find_element(By.ID, "place-table").text.lower()
        drv.find_element(By.ID, "file").send_keys(str((synth_geo[1].parent / q["image"]).resolve()))
        wait.until(lambda d: d.find_elements(By.ID, "fix-point"))
        assert drv.find_elements(By.ID, "fix-ellipse")
        assert len(drv.find_elements(By.CSS_SELECTOR, "#candidates li")) == 5
        assert "verified" in drv.find_element(By.ID, "result-table").text
        assert "answered in" in drv.find_element(By.ID, "status").text
        # the fix is drawn where the API puts it: the point's centre is the answer's x, y
        fx = float(drv.find_element(By.ID, "fix-point").get_attribute("cx"))
        a = upload(server, (synth_geo[1].parent / q["image"]).read_bytes())[1]
        assert fx == pytest.approx(a["x"], abs=1e-6)
        # every resource the page loaded came from the app itself
        loaded = drv.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(u.startswith(server) or u.startswith("blob:") for u in loaded), loaded
        logs = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
        assert logs == []
    finally:
        drv.quit()
