"""``rsseg view``: tiles of every layer cut from the rasters, pixel probabilities, a page that
loads them in headless Chromium, and nothing served from outside the prediction folder."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from tools import chromium

from rsseg.errors import RsSegError
from rsseg.viewer import start_server
from rsseg.viewer.scenes import find_scenes
from rsseg.viewer.tiles import pixel, tile

H, W = 600, 700
COLORS = {0: (255, 0, 0), 1: (0, 160, 0), 2: (0, 0, 255)}


def _tif(path, data, nodata=255, **extra):
    data = data[None] if data.ndim == 2 else data
    with rasterio.open(path, "w", driver="GTiff", height=H, width=W, count=data.shape[0], dtype=data.dtype,
                       nodata=nodata, crs="EPSG:32633", transform=from_origin(500000, 6000000, 1, 1)) as dst:
        dst.write(data)
        if "colormap" in extra:
            dst.write_colormap(1, extra["colormap"])
        if "tags" in extra:
            dst.update_tags(**extra["tags"])
    return path


@pytest.fixture(scope="module")
def predictions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pred")
    rows, cols = np.mgrid[0:H, 0:W]
    classes = ((rows // 100 + cols // 100) % 3).astype(np.uint8)
    classes[:20, :20] = 255
    _tif(folder / "s_classes.tif", classes, colormap=COLORS, tags={"classes": json.dumps(["red", "green", "blue"])})
    probs = np.stack([np.where(classes == k, 200, 27) for k in range(3)]).astype(np.uint8)
    _tif(folder / "s_probabilities.tif", probs)
    _tif(folder / "s_confidence.tif", (cols * 254 // W).astype(np.uint8))
    (folder / "s_areas.json").write_text(json.dumps({"classes": [
        {"index": 0, "name": "red", "pixels": 1, "fraction": 0.5, "km2": 0.1}]}))
    image = tmp_path_factory.mktemp("img") / "s.tif"
    _tif(image, np.stack([rows % 256, cols % 256, (rows + cols) % 256]).astype(np.uint8), nodata=None)
    (folder.parent / "secret.txt").write_text("not yours")
    return folder, image, classes


def test_every_layer_is_tiled_from_its_raster(predictions):
    folder, image, classes = predictions
    scene = find_scenes(folder, [image])["s"]
    assert scene.describe()["layers"] == ["image", "classes", "confidence"] and scene.max_zoom == 2
    assert scene.names == ["red", "green", "blue"]

    def rgba(png):
        return np.asarray(Image.open(__import__("io").BytesIO(png)).convert("RGBA"))

    full = rgba(tile(scene, "classes", 2, 1, 0))  # map pixels 256..511 x 0..255
    expected = np.array([COLORS[c] for c in range(3)])[classes[:256, 256:512]]
    np.testing.assert_array_equal(full[..., :3], expected)
    corner = rgba(tile(scene, "classes", 2, 0, 0))
    assert (corner[:20, :20, 3] == 0).all() and (corner[20:, 20:, 3] == 255).all()  # nodata transparent
    edge = rgba(tile(scene, "classes", 2, 2, 2))  # 700 x 600: the last tile is partly outside
    assert (edge[:600 - 512, :700 - 512, 3] == 255).all() and (edge[600 - 512:, :, 3] == 0).all()
    overview = rgba(tile(scene, "classes", 0, 0, 0))  # whole map in one tile, every 4th pixel
    assert overview.shape == (256, 256, 4) and (overview[:150, :175, 3] > 0).any()
    conf = rgba(tile(scene, "confidence", 0, 0, 0))  # confidence rises from left to right
    assert tuple(conf[0, 0, :3]) == (215, 25, 28)  # the ramp's red at 0
    assert np.abs(conf[0, 174, :3].astype(int) - (26, 150, 65)).max() <= 2  # near its green at 254
    img = rgba(tile(scene, "image", 2, 0, 0))
    assert img[..., :3].std() > 10 and (img[..., 3] == 255).all()
    assert rgba(tile(scene, "image", 2, 5, 5))[..., 3].max() == 0  # outside the scene: empty
    with pytest.raises(RsSegError, match="zoom 3 is outside 0..2"):
        tile(scene, "classes", 3, 0, 0)


def test_a_pixel_gives_its_class_probabilities_and_confidence(predictions):
    folder, _, classes = predictions
    scene = find_scenes(folder)["s"]
    info = pixel(scene, 350, 150)
    assert info["class"] == ["red", "green", "blue"][classes[150, 350]]
    assert info["probabilities"][info["class"]] == round(200 / 254, 4)
    assert info["confidence"] == round((350 * 254 // W) / 254, 4)
    assert pixel(scene, 5, 5)["class"] is None  # nodata
    with pytest.raises(RsSegError, match="outside"):
        pixel(scene, W, 0)


def _get(server, path):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    conn.request("GET", path)  # sent as written: no client-side normalisation of '..'
    response = conn.getresponse()
    return response.status, response.read()


def test_the_server_is_local_and_confined_to_the_folder(predictions):
    folder, image, _ = predictions
    (folder / "link.txt").unlink(missing_ok=True)
    os.symlink(folder.parent / "secret.txt", folder / "link.txt")
    server, _ = start_server(folder, 0, [image])
    try:
        assert server.server_address[0] == "127.0.0.1"
        assert _get(server, "/api/scenes")[0] == 200
        status, body = _get(server, "/files/s_areas.json")
        assert status == 200 and json.loads(body)["classes"][0]["name"] == "red"
        for path in ("/files/../secret.txt", "/files/%2e%2e/secret.txt", "/files/..%2fsecret.txt",
                     "/files/link.txt", "/files//etc/passwd"):
            status, body = _get(server, path)
            assert status == 403 and b"not yours" not in body, path
        assert _get(server, "/api/tile/nope/classes/0/0/0.png")[0] == 404
        assert _get(server, "/static/../server.py")[0] == 404
        assert _get(server, "/api/tile/s/classes/9/0/0.png")[0] == 400
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
        conn.request("GET", "/api/scenes", headers={"Host": "evil.example:80"})  # DNS rebinding
        assert conn.getresponse().status == 403
    finally:
        server.shutdown()
        server.server_close()


def test_a_port_in_use_is_one_line(predictions):
    folder, _, _ = predictions
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RsSegError, match=f"port {port} is already in use"):
            start_server(folder, port)


def _chromium() -> str:
    return chromium()


def test_the_page_loads_every_layers_tiles_in_headless_chromium(predictions, tmp_path):
    folder, image, _ = predictions
    server, _ = start_server(folder, 0, [image])
    shot = tmp_path / "viewer.png"
    try:
        cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,700",
               "--virtual-time-budget=8000", f"--screenshot={shot}", server.url + "?confidence=0.4"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        server.shutdown()
        server.server_close()
    ok = [p for p, status in server.requests if status == 200]
    assert "/" in ok or any(p.startswith("/?") for p in ok)
    for layer in ("image", "classes", "confidence"):
        assert any(p.startswith(f"/api/tile/s/{layer}/") for p in ok), (layer, server.requests)
    assert not [r for r in server.requests if r[1] != 200], server.requests
    picture = np.asarray(Image.open(shot).convert("RGB"))
    assert picture.shape[:2] == (700, 1100) and picture[:, :800].std() > 20  # the map is drawn
    shutil.copy(shot, folder.parent / "viewer-screenshot.png")
