"""`cconv filter` and `cconv gallery`: image round trips through Pillow."""
import sys

import numpy as np
import pytest

from cconv import cli
from cconv import filters as F

Image = pytest.importorskip("PIL.Image")


@pytest.fixture
def photo(tmp_path, rng):
    """A small RGB PNG with some structure, and its pixels."""
    yy, xx = np.mgrid[0:24, 0:31]
    rgb = np.stack([(xx * 8) % 256, (yy * 10) % 256, rng.integers(0, 256, (24, 31))], -1)
    rgb = rgb.astype(np.uint8)
    path = tmp_path / "in.png"
    Image.fromarray(rgb).save(path)
    return path, rgb


def read(path):
    with Image.open(path) as im:
        return np.asarray(im)


def test_filter_round_trip_named_kernel(photo, tmp_path, capsys):
    path, rgb = photo
    out = tmp_path / "out.png"
    assert cli.main(["filter", str(path), "--kernel", "sharpen", "-o", str(out)]) == 0
    assert "3x3 kernel" in capsys.readouterr().out
    got = read(out)
    assert got.dtype == np.uint8 and got.shape == rgb.shape
    np.testing.assert_array_equal(got, F.filter2d(rgb, F.sharpen()))


@pytest.mark.parametrize("source", ["literal", "npy", "txt", "csv"])
def test_filter_kernel_from_literal_or_file(photo, tmp_path, source):
    path, rgb = photo
    k = np.array([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]])
    spec = {"literal": "[[0,1,0],[1,-4,1],[0,1,0]]", "npy": tmp_path / "k.npy",
            "txt": tmp_path / "k.txt", "csv": tmp_path / "k.csv"}[source]
    if source == "npy":
        np.save(spec, k)
    elif source != "literal":
        np.savetxt(spec, k, delimiter="," if source == "csv" else " ")
    out = tmp_path / "lap.png"
    argv = ["filter", str(path), "-k", str(spec), "--offset", "128", "-o", str(out)]
    assert cli.main(argv) == 0
    ref = np.clip(np.rint(F.filter2d(rgb, k, output=np.float32) + 128), 0, 255)
    np.testing.assert_array_equal(read(out), ref)


def test_filter_options(photo, tmp_path):
    path, rgb = photo
    out = tmp_path / "edges.npy"
    argv = ["filter", str(path), "-k", "sobel_vertical", "--op", "correlate", "--gray",
            "--abs", "--mode", "BORDER_REFLECT_101", "-o", str(out)]
    assert cli.main(argv) == 0
    got = np.load(out)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    ref = np.abs(F.filter2d(gray, F.sobel_vertical(), op="correlate", mode="mirror",
                            output=np.float32))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref)
    raw = tmp_path / "raw.png"
    assert cli.main(["filter", str(path), "-k", "blur", "--raw", "-o", str(raw)]) == 0
    np.testing.assert_array_equal(read(raw), F.filter2d(rgb, F.blur(normalize=False)))


def test_filter_jpeg_and_alpha(photo, tmp_path):
    path, rgb = photo
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    src = tmp_path / "alpha.png"
    Image.fromarray(rgba).save(src)
    out = tmp_path / "alpha_out.png"
    assert cli.main(["filter", str(src), "-k", "box:3", "-o", str(out)]) == 0
    got = read(out)
    assert got.shape == rgba.shape
    np.testing.assert_array_equal(got[..., 3], 200)      # alpha untouched
    jpg = tmp_path / "out.jpg"
    assert cli.main(["filter", str(path), "-k", "gaussian:1", "-o", str(jpg)]) == 0
    assert read(jpg).shape == rgb.shape


@pytest.mark.parametrize("argv,message", [
    (["-k", "nope"], "unknown kernel 'nope'"),
    (["-k", "[[1, 2], [3]]"], "not a literal matrix"),
    (["-k", "missing.npy"], "no such file"),
    (["-k", "sharpen", "--mode", "sideways"], "unknown mode 'sideways'"),
])
def test_filter_bad_arguments(photo, tmp_path, capsys, argv, message):
    path, _ = photo
    rc = cli.main(["filter", str(path), *argv, "-o", str(tmp_path / "x.png")])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_filter_unreadable_image(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert cli.main(["filter", str(bad), "-k", "blur", "-o", str(tmp_path / "o.png")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_missing_pillow_gives_a_hint(monkeypatch):
    from cconv import cli_filter

    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(SystemExit, match="needs Pillow"):
        cli_filter.require_pillow()


def test_gallery_writes_a_png(tmp_path, capsys):
    out = tmp_path / "kernels.png"
    assert cli.main(["gallery", "-o", str(out), "--tile", "64"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as im:
        assert im.width == 4 * (64 + 6) + 6
    assert "photo:" in capsys.readouterr().out


def test_gallery_panels_show_the_notes_points():
    from cconv.cli_gallery import panels, synthetic_image

    gray = synthetic_image(60, 80)
    shown = dict(panels(gray))
    raw = shown["blur raw (notes: sums to 8)"].astype(int)
    norm = shown["blur (normalised, /8)"].astype(int)
    assert (raw >= norm).all() and raw.mean() > 1.5 * norm.mean()
    eightfold = F.filter2d(gray, F.blur(), output=np.float64) * 8
    np.testing.assert_array_equal(raw, np.clip(np.rint(eightfold), 0, 255))
    conv = shown["sobel_vertical, convolve: +d/dx"]
    corr = shown["sobel_vertical, correlate: -d/dx"]
    # 128 + r/2 and 128 - r/2: mirror images about grey (up to rounding and clipping)
    assert np.abs(conv.astype(int) + corr.astype(int) - 256).max() <= 1
