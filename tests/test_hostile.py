"""Hostile inputs (issue 25): files, names and faults that must each end in one clean line.

The corpus is generated here: for every file family (PLY, PCD, XYZ, NPY/NPZ, LAS, images, binvox)
files that are malformed, truncated, oversized or booby-trapped; names with rich markup, terminal
escapes, brackets, newlines and unicode; inputs that are not regular files (FIFOs, devices, link
loops); and faults (a full disk, a read-only place, SIGTERM mid-write, a network that returns NaN).
Every bad case must give :class:`~occrecon.errors.InputError` (or exit code 1/2 from the CLI) with
one line naming the file, never a traceback, a hang, a leaked warning or a raw escape sequence.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from occrecon.cli import _output as out
from occrecon.cli.main import main
from occrecon.errors import InputError, NonFiniteFieldError
from occrecon.io import readers
from occrecon.io.readers import read_image, read_mask, read_points, read_voxels

# Phrases of parser internals that must never be the reason shown.
INTERNAL = ("list index out of range", "index out of", "bad_alloc", "Traceback", "object has no attribute", "cannot reshape", "unpack requires")


def run(args: list, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("Error:")]


def assert_clean(error: InputError, path: Path) -> str:
    """One line, naming the file, no parser internals, no raw control characters."""
    message = str(error)
    assert path.name in message or out.safe_text(path.name) in message, message
    assert "\n" not in message and "\r" not in message and "\x1b" not in message, message
    assert not any(phrase in message for phrase in INTERNAL), message
    return message


def read_clean(read, path: Path) -> str:
    """``read(path)`` must raise a clean InputError without leaking a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError) as info:
            read(path)
    return assert_clean(info.value, path)


def sphere_points(n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def write_xyz(path: Path, points: np.ndarray) -> Path:
    np.savetxt(path, points, fmt="%.6f")
    return path


# --------------------------------------------------------------------------- 1+2: what reaches the terminal


def test_safe_text_escapes_controls_and_keeps_everything_else():
    assert out.safe_text("scan[final].ply") == "scan[final].ply"
    assert out.safe_text("a\x1b[2Jb\nc\rd\te\x00f\x7fg\x9bh") == "a\\x1b[2Jb\\nc\\rd\\te\\x00f\\x7fg\\x9bh"
    assert out.safe_text("évian\u202eexe.ply") == "évian\\u202eexe.ply"  # bidirectional override shown, not obeyed
    assert out.safe_text(os.fsdecode(b"scan\xff.ply")) == "scan\\xff.ply"  # an undecodable byte of a file name
    assert out.safe_text("🙂 cuda:-1 :thumbs_up:") == "🙂 cuda:-1 :thumbs_up:"


@pytest.mark.parametrize(
    "message, shown",
    [
        ("bad.xyz: line 3 is not numeric: 'foo[/red] 7 8'", "bad.xyz: line 3 is not numeric: 'foo[/red] 7 8'"),
        ("x[/]y: unknown model", "x[/]y: unknown model"),
        ("--device cuda:-1 is not a device", "--device cuda:-1 is not a device"),
        ("unknown device cuda:-1: use cpu :thumbs_up:", "unknown device cuda:-1: use cpu :thumbs_up:"),
        ("h.binvox: header '\x1b[2J\x1b[HFAKE: all inputs OK'", "h.binvox: header '\\x1b[2J\\x1b[HFAKE: all inputs OK'"),
        ("two\nlines\r\n", "two\\nlines\\r\\n"),
        ("[bold red]loud[/bold red] [link=http://x]y[/link]", "[bold red]loud[/bold red] [link=http://x]y[/link]"),
    ],
)
def test_error_shows_every_message_as_itself_on_one_line(capsys, message, shown):
    out.error(message)
    err = capsys.readouterr().err
    assert err == f"Error: {shown}\n"


def test_every_helper_escapes_its_untrusted_parts(capsys):
    out.note("note [/red] \x1b[31m")
    out.ok_line("scan[final].ply", "out/scan[final].obj", "1 vertices")
    out.skipped_line("a[/b].ply", "exists\n(fake)")
    out.item_note("x[/]", "crop\x1b[2J 1/2")
    out.detail("[red]not red[/red]")
    out.plain("plain\x07bell")
    out.result_line("model folder: ", "runs/[x]")
    out.print_traceback("Traceback (most recent call last):\n  File \"x\x1b.py\"\nValueError: [/red]\n")
    with out.status("loading model x[/]y"):
        pass
    import typer

    out.click_error(typer.BadParameter("cuda:-1: x[/]y\x1b[2J"))
    captured = capsys.readouterr()
    assert "\x1b" not in captured.err + captured.out and "\x07" not in captured.err
    assert captured.err.splitlines() == [
        "note [/red] \\x1b[31m",
        "✓ scan[final].ply → out/scan[final].obj (1 vertices)",
        "↷ a[/b].ply: exists\\n(fake)",
        "  x[/]: crop\\x1b[2J 1/2",
        "  [red]not red[/red]",
        "plain\\x07bell",
        "Traceback (most recent call last):",
        '  File "x\\x1b.py"',
        "ValueError: [/red]",
        "Error: Invalid value: cuda:-1: x[/]y\\x1b[2J",
    ]
    assert captured.out == "model folder: runs/[x]\n"


def test_os_error_message_says_the_usual_causes_in_words():
    full = OSError(errno.ENOSPC, "No space left on device", "/data/run/checkpoint.pt")
    assert out.os_error_message(full) == "/data/run/checkpoint.pt: cannot write: no space left on the device (the disk is full)"
    readonly = OSError(errno.EROFS, "Read-only file system")
    assert out.os_error_message(readonly, "out.csv", "cannot write the CSV") == "out.csv: cannot write the CSV: read-only file system"


def test_markup_in_a_row_fails_that_file_only_and_names_it(points_model, tmp_path, capsys):
    """Issue 25's first reproduction: rich.errors.MarkupError stopped the batch before the good file."""
    bad = tmp_path / "bad.xyz"
    bad.write_bytes(b"1 2 3\n4 5 6\nfoo[/red] 7 8\n")
    good = write_xyz(tmp_path / "scan[final].xyz", sphere_points())
    code, _, err = run(["points", bad, good, "--model", points_model, "-d", tmp_path / "out"], capsys)
    assert code == 1 and "Traceback" not in err and "MarkupError" not in err
    (line,) = error_lines(err)
    assert line == f"Error: {bad}: line 3 is not numeric: 'foo[/red] 7 8'"
    assert (tmp_path / "out" / "scan[final].obj").is_file()
    assert "scan[final].xyz → " in err  # printed as itself, not as scan.xyz


def test_terminal_escapes_from_a_header_or_a_name_never_reach_the_terminal(voxels_model, tmp_path, capsys):
    header = tmp_path / "fake.binvox"
    header.write_bytes(b"#binvox 1\ndim 8 8 8\n\x1b[2J\x1b[HFAKE: all inputs OK\ndata\n\x00\xff\x00\xff\x01\x02")
    named = tmp_path / "evil\x1b[2J\nFAKE ok.binvox"
    named.write_bytes(b"not binvox")
    code, stdout, err = run(["voxels", header, named, "--model", voxels_model, "-d", tmp_path / "out", "--json"], capsys)
    assert code == 1
    assert "\x1b" not in err and "\x1b" not in stdout
    lines = error_lines(err)
    assert len(lines) == 2 and len(err.splitlines()) == len([l for l in err.splitlines() if l.strip()])
    assert any("\\x1b[2J\\x1b[HFAKE: all inputs OK" in line for line in lines)
    assert any("evil\\x1b[2J\\nFAKE ok.binvox" in line for line in lines)
    assert all(json.loads(line)["status"] == "failed" for line in stdout.splitlines())  # json escapes too


def test_markup_in_option_values_is_shown_not_parsed(tmp_path, capsys):
    xyz = write_xyz(tmp_path / "a.xyz", sphere_points())
    code, _, err = run(["points", xyz, "--model", "x[/]y", "-d", tmp_path], capsys)
    assert code != 0 and "MarkupError" not in err and "Traceback" not in err
    (line,) = error_lines(err)
    assert "x[/]y" in line


# --------------------------------------------------------------------------- the file corpus


def _ply_ascii(body: str, header_extra: str = "", count: int = 3) -> bytes:
    return (
        f"ply\nformat ascii 1.0\nelement vertex {count}\nproperty float x\nproperty float y\nproperty float z\n{header_extra}end_header\n{body}"
    ).encode()


def _ply_binary(count: int, rows: int) -> bytes:
    head = f"ply\nformat binary_little_endian 1.0\nelement vertex {count}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    return head.encode() + np.random.default_rng(0).random((rows, 3)).astype("<f4").tobytes()


def _pcd(data: str, points: int, body: bytes, fields: str = "x y z") -> bytes:
    n = len(fields.split())
    head = (
        f"# .PCD v0.7\nVERSION 0.7\nFIELDS {fields}\nSIZE {' '.join(['4'] * n)}\nTYPE {' '.join(['F'] * n)}\nCOUNT {' '.join(['1'] * n)}\n"
        f"WIDTH {points}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {points}\nDATA {data}\n"
    )
    return head.encode() + body


def _npy_header_only(shape: tuple, descr: str = "<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _npz_bomb(key: str, shape: tuple, zeros_mb: int = 8) -> bytes:
    """A small archive whose member declares a huge array (the data is zeros, compressed ~1000x)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
            member.write(_npy_header_only(shape))
            chunk = bytes(1 << 20)
            for _ in range(zeros_mb):
                member.write(chunk)
    return buf.getvalue()


def _npy_bytes(array: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, **kwargs)
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A 4x4 PNG whose IHDR says width x height (CRC fixed, so only the size lies)."""
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def _binvox(header: bytes, runs: bytes = b"\x00\xff\x00\xff\x01\x02") -> bytes:
    return b"#binvox 1\n" + header + b"data\n" + runs


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/occrecon-hostile-pwned",))


POINT_CASES = {
    # PLY
    "no-end-header.ply": (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n1\n2\n3\n", "malformed PLY header"),
    "unknown-type.ply": (_ply_ascii("1 2 3\n", "property quad w\n"), "malformed PLY header"),
    "negative-count.ply": (_ply_ascii("1 2 3\n", count=-5), "malformed PLY header"),
    "bad-format.ply": (b"ply\nformat klingon 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n", "malformed PLY header"),
    "huge-count.ply": (_ply_binary(2_000_000_000, 3), "over the limit"),
    "short-body.ply": (_ply_binary(1_000_000, 10), "truncated"),
    "two-columns.ply": (
        b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nend_header\n1 2\n3 4\n5 6\n",
        "",
    ),
    "ascii-garbage.ply": (_ply_ascii("1 2 3\n4 five 6\n\x00\xff\xfe 9\n"), ""),
    "escape-header.ply": (_ply_ascii("1 2 3\n", "comment ok\nelement faces \x1b[2J\n"), "malformed PLY header (line 'element faces \\x1b[2J')"),
    # PCD
    "no-points.pcd": (b"VERSION 0.7\nFIELDS x y z\nDATA ascii\n1 2 3\n", "PCD"),
    "huge.pcd": (_pcd("binary", 100_000_000, b"\x00" * 120), "over the limit"),
    "short.pcd": (_pcd("binary", 1000, b"\x00" * 120), "truncated"),
    "lying-compressed.pcd": (_pcd("binary_compressed", 10, struct.pack("<II", 16, 4_000_000_000) + b"\x00" * 16), "corrupt binary_compressed"),
    "unknown-data.pcd": (_pcd("klingon", 2, b"1 2 3\n4 5 6\n"), "malformed PCD header"),
    "bad-line.pcd": (b"VERSION 0.7\nFIELDS x y z\nROTATE 90\nPOINTS 1\nDATA ascii\n1 2 3\n", "malformed PCD header"),
    "no-xyz.pcd": (_pcd("ascii", 2, b"1\n2\n", fields="intensity"), ""),
    # text tables
    "markup.xyz": (b"1 2 3\n4 5 6\nfoo[/red] 7 8\n", "line 3 is not numeric: 'foo[/red] 7 8'"),
    "escape.xyz": (b"1 2 3\n\x1b[2J 5 6\n", "not numeric: '\\x1b[2J 5 6'"),
    "ragged.csv": (b"1,2,3\n4,5\n7,8,9\n", "line 2 has 2 values"),
    "words.txt": (b"hello world\nthis is text\n", "no rows of at least 3 numbers"),
    "nul.xyz": (b"\x00" * 64, ""),
    "absurd.xyz": (b"1 2 3\n4 5 6\n1e30 0 0\n", "beyond"),
    "all-nan.xyz": (b"nan nan nan\ninf 1 2\n", "non-finite"),
    # arrays
    "transposed.npy": (_npy_bytes(sphere_points(100).T.copy()), "looks transposed: shape (3, 100)"),
    "pickled.npy": (_npy_bytes(np.array([_Evil()], dtype=object), allow_pickle=True), "pickled"),
    "declared-huge.npy": (_npy_header_only((2_000_000_000, 3)) + b"\x00" * 64, "over the limit"),
    "truncated.npy": (_npy_bytes(np.zeros((100, 3)))[:-50], "truncated"),
    "bad-version.npy": (b"\x93NUMPY\x07\x00" + _npy_header_only((3, 3))[8:], "not a valid .npy"),
    "absurd.npy": (_npy_bytes(np.array([[1e30, 0, 0], [0, 1, 0], [1, 1, 1]])), "beyond"),
    "float16-inf.npy": (_npy_bytes(np.array([[np.inf, np.inf, np.inf], [-np.inf, 0, 1]], np.float16)), "non-finite"),
    "structured.npy": (_npy_bytes(np.zeros(4, dtype=[("a", "f4"), ("b", "f4")])), "without x, y, z"),
    "bomb.npz": (_npz_bomb("points", (180_000_000, 3)), "over the limit"),
    "not-a-zip.npz": (b"PK\x03\x04 nope nope nope", "not a valid .npz"),
    "member-not-npy.npz": (b"", "not an .npy array"),  # filled in below
    # meshes
    "broken.obj": (b"v 1 2\nv 3\nf 1 2 3\n", ""),
    "broken.off": (b"OFF\n999999999 1 0\n1 2 3\n", ""),
    "broken.stl": (b"solid x\nfacet normal 0 0\nouter loop\nvertex 1 2\n", ""),
}


def _member_not_npy() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("points", b"not an array")
    return buf.getvalue()


POINT_CASES["member-not-npy.npz"] = (_member_not_npy(), "not an .npy array")


@pytest.mark.parametrize("name", sorted(POINT_CASES))
def test_hostile_point_files_give_one_clean_line(tmp_path, name):
    data, phrase = POINT_CASES[name]
    path = tmp_path / name
    path.write_bytes(data)
    started = time.perf_counter()
    message = read_clean(read_points, path)
    assert phrase in message
    assert time.perf_counter() - started < 10  # refused from headers, nothing huge decoded


def test_a_decompression_bomb_npz_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    path = tmp_path / "bomb.npz"
    path.write_bytes(_npz_bomb("points", (180_000_000, 3)))
    assert path.stat().st_size < 100_000  # declares 4.3 GB
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: pytest.fail("the array was decompressed"))
    message = read_clean(read_points, path)
    assert "OCCRECON_MAX_INPUT_BYTES" in message and "(180000000x3 float64) would take 8.05 GiB" in message  # with its float64 copy
    voxels = tmp_path / "grid.npz"
    voxels.write_bytes(_npz_bomb("occupancy", (2048, 2048, 2048), zeros_mb=1))
    assert "2048x2048x2048" in read_clean(read_voxels, voxels)


def test_the_memory_budget_can_be_raised_and_must_be_a_size(tmp_path, monkeypatch):
    path = tmp_path / "big.npy"
    np.save(path, sphere_points(2000))  # 48 kB of float64
    monkeypatch.setenv("OCCRECON_MAX_INPUT_BYTES", "10K")
    message = read_clean(read_points, path)
    assert "over the limit of 10 KiB" in message and "OCCRECON_MAX_INPUT_BYTES" in message
    monkeypatch.setenv("OCCRECON_MAX_INPUT_BYTES", "1M")
    assert read_points(path).points.shape == (2000, 3)
    monkeypatch.setenv("OCCRECON_MAX_INPUT_BYTES", "lots")
    from occrecon.errors import OccreconError

    with pytest.raises(OccreconError, match="OCCRECON_MAX_INPUT_BYTES='lots' is not a size"):
        read_points(path)


def test_text_and_mesh_files_over_the_budget_are_refused_unread(tmp_path, monkeypatch):
    xyz = write_xyz(tmp_path / "big.xyz", sphere_points(2000))
    obj = tmp_path / "big.obj"
    trimesh.creation.icosphere(3).export(obj)
    monkeypatch.setenv("OCCRECON_MAX_INPUT_BYTES", "4K")
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("the file was read"))
    assert "over the limit" in read_clean(read_points, xyz)
    assert "over the limit" in read_clean(read_points, obj)


@pytest.mark.skipif(__import__("importlib").util.find_spec("laspy") is None, reason="laspy is not installed")
def test_hostile_las_headers(tmp_path):
    import laspy

    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales = np.array([0.001, 0.001, 0.001])
    las = laspy.LasData(header)
    cloud = sphere_points(200) * 10
    las.x, las.y, las.z = cloud[:, 0], cloud[:, 1], cloud[:, 2]
    good = tmp_path / "good.las"
    las.write(good)
    data = bytearray(good.read_bytes())
    assert read_points(good).points.shape == (200, 3)

    vlr_bomb = bytearray(data)
    vlr_bomb[100:104] = struct.pack("<I", 1_577_058_325)  # laspy loops over them for hours
    path = tmp_path / "vlrs.las"
    path.write_bytes(bytes(vlr_bomb))
    started = time.perf_counter()
    assert "variable-length records" in read_clean(read_points, path)
    assert time.perf_counter() - started < 5

    many = bytearray(data)
    many[107:111] = struct.pack("<I", 4_000_000_000)  # legacy point count
    path = tmp_path / "count.las"
    path.write_bytes(bytes(many))
    assert "over the limit" in read_clean(read_points, path)

    short = tmp_path / "short.las"
    short.write_bytes(bytes(data[: len(data) - 500]))
    assert "truncated" in read_clean(read_points, short)

    not_las = tmp_path / "junk.las"
    not_las.write_bytes(b"LASX" + bytes(400))
    read_clean(read_points, not_las)


VOXEL_CASES = {
    "escape.binvox": (_binvox(b"dim 2 2 2\n\x1b[2J\x1b[HFAKE: all inputs OK\n"), "\\x1b[2J\\x1b[HFAKE: all inputs OK"),
    "huge.binvox": (_binvox(b"dim 4096 4096 4096\n"), "64 GiB"),
    "zero.binvox": (_binvox(b"dim 0 8 8\n"), "dim needs 3 positive integers"),
    "negative.binvox": (_binvox(b"dim -8 8 8\n"), "dim needs 3 positive integers"),
    "nan-scale.binvox": (_binvox(b"dim 2 2 2\nscale nan\n", b"\x01\x08"), "invalid translate/scale"),
    "short-runs.binvox": (_binvox(b"dim 64 64 64\n", b"\x01\xff" * 10), "truncated binvox data"),
    "many-runs.binvox": (_binvox(b"dim 2 2 2\n", b"\x01\xff" * 10), "corrupt binvox data"),
    "no-magic.binvox": (b"PK not a binvox file", "not a binvox file"),
    "declared-huge.npy": (_npy_header_only((4096, 4096, 4096), "|b1") + bytes(64), "over the limit"),
    "pickled.npz": (b"", "pickled"),  # filled in below
    "strings.npy": (_npy_bytes(np.array([[["a"]]])), "expected a bool or numeric voxel grid"),
}


def _pickled_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, occupancy=np.array([_Evil()], dtype=object))
    return buf.getvalue()


VOXEL_CASES["pickled.npz"] = (_pickled_npz(), "pickled")


@pytest.mark.parametrize("name", sorted(VOXEL_CASES))
def test_hostile_voxel_files_give_one_clean_line(tmp_path, name):
    data, phrase = VOXEL_CASES[name]
    path = tmp_path / name
    path.write_bytes(data)
    message = read_clean(read_voxels, path)
    assert phrase in message
    assert not Path("/tmp/occrecon-hostile-pwned").exists()


def test_binvox_dims_within_a_raised_budget_read_on_to_the_data(tmp_path, monkeypatch):
    path = tmp_path / "big.binvox"
    path.write_bytes(_binvox(b"dim 4096 4096 4096\n"))
    monkeypatch.setenv("OCCRECON_MAX_INPUT_BYTES", "100G")
    assert "truncated binvox data" in read_clean(read_voxels, path)  # the budget allows it; the data does not


def _jpeg(size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(0)
    pixels = np.full((size[1], size[0], 3), 255, np.uint8)
    pixels[size[1] // 4 : size[1] * 3 // 4, size[0] // 4 : size[0] * 3 // 4] = (200, 30, 30)
    pixels += rng.integers(0, 3, pixels.shape, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


IMAGE_CASES = {
    "claims-50000px.png": (_png_claiming(50_000, 50_000), "2500.0 megapixels, over the limit of 100 MP"),
    "claims-12000px.png": (_png_claiming(12_000, 12_000), "144.0 megapixels, over the limit of 100 MP"),
    "zero-size.png": (_png_claiming(0, 10), ""),
    "truncated.jpg": (_jpeg((64, 48))[:300], ""),
    "text.png": (b"this is not an image at all", "cannot be decoded as an image"),
    "escape.gif": (b"GIF89a\x1b[2J" + bytes(20), ""),
}


@pytest.mark.parametrize("name", sorted(IMAGE_CASES))
def test_hostile_images_give_one_clean_line(tmp_path, name):
    data, phrase = IMAGE_CASES[name]
    path = tmp_path / name
    path.write_bytes(data)
    message = read_clean(read_image, path)
    assert phrase in message
    if "megapixels" in phrase:
        assert "OCCRECON_MAX_PIXELS" in message


def test_a_real_decompression_bomb_is_refused_without_pillows_warning(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("1", (11_000, 11_000)).save(path)  # 121 MP in a few hundred kB: over Pillow's warning size
    assert path.stat().st_size < 1_000_000
    message = read_clean(read_image, path)  # warnings are errors in read_clean
    assert "11000x11000 = 121.0 megapixels" in message and "OCCRECON_MAX_PIXELS" in message
    monkeypatch.setattr(readers, "DOWNSCALE_PIXELS", 512 * 512)
    monkeypatch.setenv("OCCRECON_MAX_PIXELS", "200M")  # raised: above Pillow's own limit too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(path)
    assert image.size == (512, 512)


def test_large_images_are_downscaled_while_read_and_masks_match(tmp_path, monkeypatch):
    from occrecon.preprocess.image import prepare_image

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(_jpeg((1600, 1200)))
    mask = np.zeros((1200, 1600), np.uint8)
    mask[300:900, 400:1200] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    monkeypatch.setattr(readers, "DOWNSCALE_PIXELS", 400 * 300)
    from PIL import JpegImagePlugin

    drafts = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        drafts.append(size)
        return real_draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    image = read_image(photo)
    assert image.size == (400, 300) and drafts == [(400, 300)]  # the JPEG codec decoded at 1/4 scale
    assert read_mask(tmp_path / "mask.png").shape == (300, 400)
    prepared = prepare_image(image, mask=tmp_path / "mask.png")
    assert tuple(prepared.tensor.shape) == (3, 224, 224)
    # An in-memory image at full size with a mask file that was read downscaled: the mask is scaled back.
    full = Image.fromarray(np.asarray(Image.open(photo)))
    assert tuple(prepare_image(full, mask=tmp_path / "mask.png").tensor.shape) == (3, 224, 224)


def test_pixel_limit_env(tmp_path, monkeypatch):
    path = tmp_path / "photo.jpg"
    path.write_bytes(_jpeg((1600, 1200)))
    monkeypatch.setenv("OCCRECON_MAX_PIXELS", "1M")
    message = read_clean(read_image, path)
    assert "1600x1200 = 1.9 megapixels, over the limit of 1 MP" in message and "OCCRECON_MAX_PIXELS=2M" in message


def test_parser_internals_and_memory_errors_become_readable_reasons(tmp_path, monkeypatch):
    ply = tmp_path / "scan.ply"
    ply.write_bytes(_ply_ascii("1 2 3\n4 5 6\n7 8 9\n"))
    monkeypatch.setattr(trimesh, "load", lambda *a, **k: (_ for _ in ()).throw(IndexError("list index out of range")))
    assert read_clean(read_points, ply).endswith("malformed PLY file")
    monkeypatch.setattr(trimesh, "load", lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    assert "not enough memory to read it as PLY" in read_clean(read_points, ply)
    import open3d as o3d

    pcd = tmp_path / "scan.pcd"
    pcd.write_bytes(_pcd("binary", 2, np.arange(6, dtype="<f4").tobytes()))  # binary PCDs are open3d's
    monkeypatch.setattr(o3d.io, "read_point_cloud", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("std::bad_alloc")))
    assert "not enough memory to read it as PCD" in read_clean(read_points, pcd)


def test_coordinates_of_1e30_leak_no_numpy_warning(tmp_path):
    path = tmp_path / "far.npy"
    np.save(path, np.array([[1e30, 1e30, 1e30], [-1e30, 2e30, 0.0], [0.0, 0.0, 1e30]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            with pytest.raises(InputError, match="beyond"):
                read_points(path)


# --------------------------------------------------------------------------- names


# Paths relative to a test folder; a "/" inside brackets makes a folder, so the whole path reads as markup.
HOSTILE_NAMES = [
    "scan[final].xyz",
    "[bold red]loud[/bold red].xyz",
    "x[/]y.xyz",
    "[link=file:///etc/passwd]click[/link].xyz",
    "evil\x1b[2J\x1b[Hname.xyz",
    "two\nlines.xyz",
    "tab\there.xyz",
    "ünïcødé 点云 🙂.xyz",
    "rtl\u202egnp.xyz",
    ":thumbs_up: cuda:-1.xyz",
    "-starts-with-dash.xyz",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_named_as_themselves(tmp_path, name):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"1 2 3\n4 5 6\nnot numbers at all\n")
    with pytest.raises(InputError) as info:
        read_points(path)
    assert str(path) in str(info.value)  # the library keeps the name exact; the CLI escapes it
    shown = out.safe_text(info.value)
    assert "\n" not in shown and "\x1b" not in shown and "\u202e" not in shown


def test_hostile_names_in_a_batch_each_give_one_line(points_model, tmp_path, capsys):
    good = write_xyz(tmp_path / "good.xyz", sphere_points())
    bad = []
    for name in HOSTILE_NAMES:
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"1 2 3\n4 5 6\nnot numbers at all\n")
        bad.append(path)
    code, stdout, err = run(["points", "--model", points_model, "-d", tmp_path / "out", "--json", "--", *bad, good], capsys)
    assert code == 1 and "Traceback" not in err
    assert "\x1b" not in err and "\u202e" not in err
    assert len(error_lines(err)) == len(HOSTILE_NAMES)
    statuses = [json.loads(line)["status"] for line in stdout.splitlines()]
    assert statuses.count("failed") == len(HOSTILE_NAMES) and statuses.count("ok") == 1
    assert "scan[final].xyz" in err and "[bold red]loud[/bold red].xyz" in err


# --------------------------------------------------------------------------- 4+5: not regular files, link loops


def _finishes(fn, timeout: float = 10.0):
    """Run fn in a thread; fail (instead of hanging the suite) when it blocks."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "blocked reading a non-regular file"
    return result


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "dev-urandom", "directory", "socket"])
def test_non_regular_files_are_refused_at_once(tmp_path, kind):
    import socket

    if kind == "fifo":
        path = tmp_path / "scan.ply"
        os.mkfifo(path)
    elif kind == "directory":
        path = tmp_path / "scan.ply"
        path.mkdir()
    elif kind == "socket":
        path = tmp_path / "scan.ply"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    else:
        path = Path("/dev/zero" if kind == "dev-zero" else "/dev/urandom")
    for read in (read_points, read_voxels, read_image, read_mask):
        result = _finishes(lambda: read(path))
        error = result.get("error")
        assert isinstance(error, InputError), result
        assert "not a regular file" in str(error) and "empty" not in str(error)


def test_a_fifo_as_mask_is_refused_not_waited_on(image_model, tmp_path, capsys):
    Image.new("RGB", (64, 64), (255, 255, 255)).save(tmp_path / "photo.png")
    fifo = tmp_path / "mask.png"
    os.mkfifo(fifo)
    result = _finishes(lambda: run(["image", tmp_path / "photo.png", "--mask", fifo, "--model", image_model, "-d", tmp_path / "out"], capsys))
    code, _, err = result["value"]
    assert code == 1
    (line,) = error_lines(err)
    assert "mask.png: not a regular file: it is a FIFO" in line


def test_a_symlink_loop_fails_only_that_input(points_model, tmp_path, capsys):
    (tmp_path / "a.ply").symlink_to("b.ply")
    (tmp_path / "b.ply").symlink_to("a.ply")
    good = write_xyz(tmp_path / "good.xyz", sphere_points())
    code, stdout, err = run(["points", tmp_path / "a.ply", tmp_path / "b.ply", good, "--model", points_model, "-d", tmp_path / "out", "--json"], capsys)
    assert code == 1 and "RuntimeError" not in err and "Traceback" not in err
    status = {Path(json.loads(line)["input"]).name: json.loads(line)["status"] for line in stdout.splitlines()}
    assert status == {"a.ply": "failed", "b.ply": "failed", "good.xyz": "ok"}
    assert all("symbolic link loop" in line for line in error_lines(err))


def test_symlink_loops_and_dangling_links_in_a_folder_are_reported(tmp_path):
    from occrecon.io.paths import expand_inputs

    (tmp_path / "a.ply").symlink_to("b.ply")
    (tmp_path / "b.ply").symlink_to("a.ply")
    (tmp_path / "gone.ply").symlink_to("nowhere.ply")
    write_xyz(tmp_path / "good.xyz", sphere_points())
    items = {item.path.name: item.problem for item in expand_inputs([tmp_path, tmp_path / "a.ply"], {".ply", ".xyz"})}
    assert items["a.ply"].startswith("symbolic link loop") and items["b.ply"].startswith("symbolic link loop")
    assert items["good.xyz"] is None and items["gone.ply"] is None  # the reader says "broken symbolic link"
    message = read_clean(read_points, tmp_path / "gone.ply")
    assert "broken symbolic link" in message and "nowhere.ply" in message


# --------------------------------------------------------------------------- 3: a network whose output is not finite


def test_nan_weights_are_an_error_naming_the_cause(points_model):
    import torch

    from occrecon import load_model, reconstruct_points

    model = load_model(points_model, "cpu")
    with torch.no_grad():
        for parameter in model.net.decoder.parameters():
            parameter.fill_(float("nan"))
    with pytest.raises(NonFiniteFieldError, match="network's output was not finite"):
        reconstruct_points(model, sphere_points())


def test_nan_field_in_the_cli_fails_the_item_and_writes_nothing(points_model, tmp_path, capsys, monkeypatch):
    from occrecon.extract import mise

    monkeypatch.setattr(mise, "lattice_points", lambda *a, **k: np.full((len(a[0]), 3), np.nan, np.float32))
    xyz = write_xyz(tmp_path / "scan.xyz", sphere_points())
    code, _, err = run(["points", xyz, "--model", points_model, "-d", tmp_path / "out"], capsys)
    assert code == 1
    (line,) = error_lines(err)
    assert "scan.xyz" in line and "not finite" in line
    assert not (tmp_path / "out" / "scan.obj").exists()


# --------------------------------------------------------------------------- 7: write errors


def test_convert_into_a_file_is_one_line_exit_2(tmp_path, capsys):
    target = tmp_path / "model"
    target.write_text("I am a file", encoding="utf-8")
    code, _, err = run(["convert", tmp_path / "whatever.pt", "-o", target], capsys)
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line == f"Error: {target}: exists and is not a folder; -o names the model folder to write"
    code, _, err = run(["convert", tmp_path / "whatever.pt", "-o", target / "sub"], capsys)
    assert code == 2 and err.strip().splitlines() == [f"Error: {target / 'sub'}: {target} is a file, not a folder"]


def _fake_conversion(monkeypatch, folder: Path) -> None:
    monkeypatch.setattr("occrecon.convert.convert_checkpoint", lambda checkpoint, output, arch, half: folder)


def test_convert_on_a_full_disk_is_one_line_and_leaves_no_temporary(tmp_path, capsys, monkeypatch):
    from tiny_models import save_tiny_model

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("occrecon.io.atomic._write_all", full)

    def convert(checkpoint, output, arch, half):
        return save_tiny_model("voxels", Path(output))

    monkeypatch.setattr("occrecon.convert.convert_checkpoint", convert)
    code, _, err = run(["convert", tmp_path / "x.pt", "-o", tmp_path / "m"], capsys)
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert "no space left on the device (the disk is full)" in line and "cannot write the model folder" in line
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.endswith(".tmp")]


def test_convert_push_to_hub_offline_is_one_line(tmp_path, capsys, monkeypatch):
    from tiny_models import save_tiny_model

    folder = save_tiny_model("voxels", tmp_path / "m")
    _fake_conversion(monkeypatch, folder)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run(["convert", tmp_path / "x.pt", "-o", tmp_path / "m", "--overwrite", "--push-to-hub", "org/name"], capsys)
    assert code == 2 and "Traceback" not in err
    (line,) = [l for l in err.strip().splitlines() if l.strip()]
    assert line.startswith("Error: ") and "org/name" in line and str(folder) in line


def test_train_out_or_cache_on_a_file_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("occrecon.training.train", lambda *a, **k: pytest.fail("training started"))
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    for option in ("--out", "--cache"):
        args = ["train", "points", "--out", tmp_path / "run", "--steps", "1"]
        args += [option, blocker] if option == "--cache" else []
        if option == "--out":
            args[3] = blocker
        code, _, err = run(args, capsys)
        assert code == 2 and "Traceback" not in err
        (line,) = err.strip().splitlines()
        assert line == f"Error: {option} {blocker}: exists and is not a folder"


def test_train_on_a_full_disk_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "checkpoint.pt"))

    monkeypatch.setattr("occrecon.training.train", full)
    code, _, err = run(["train", "points", "--out", tmp_path / "run", "--steps", "1", "-q"], capsys)
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line == f"Error: {tmp_path / 'run' / 'checkpoint.pt'}: cannot write: no space left on the device (the disk is full); the run stopped"


def test_training_state_is_never_half_written(tmp_path, monkeypatch):
    from occrecon.training import STATE_NAME, TrainConfig, _save_checkpoint, _write_state

    config = TrainConfig(task="points", out=str(tmp_path))
    _write_state(tmp_path, config, [{"step": 1}])
    before = (tmp_path / STATE_NAME).read_bytes()

    def full(fd, data):
        os.write(fd, bytes(data[:7]))  # half a file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("occrecon.io.atomic._write_all", full)
    with pytest.raises(OSError):
        _write_state(tmp_path, config, [{"step": 1}, {"step": 2}])
    assert (tmp_path / STATE_NAME).read_bytes() == before
    assert json.loads(before)["history"] == [{"step": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_NAME]

    import torch

    monkeypatch.setattr(torch, "save", lambda payload, path: (Path(path).write_bytes(b"half"), (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))[1])
    with pytest.raises(OSError):
        _save_checkpoint(tmp_path / "checkpoint.pt", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_NAME]


# --------------------------------------------------------------------------- 9: interrupted writes


_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import occrecon.io.atomic as atomic

    target = Path(sys.argv[1])
    if sys.argv[2] == "handler":
        atomic.install_sigterm_handler()

    def slow(fd, data):  # a slow disk: half the bytes, then wait for the signal
        os.write(fd, data[: len(data) // 2])
        print("writing", flush=True)
        time.sleep(60)

    atomic._write_all = slow
    try:
        atomic.write_bytes_atomic(target, b"x" * 1000)
    except KeyboardInterrupt as exc:
        print(type(exc).__name__, getattr(exc, "signum", None), flush=True)
        sys.exit(143)
    """
)


def _write_then_sigterm(tmp_path: Path, mode: str) -> tuple[int, str]:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER, encoding="utf-8")
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path / "mesh.obj"), mode], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGTERM)
    rest = child.communicate(timeout=30)[0]
    return child.returncode, rest


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".mesh.obj.") and p.name.endswith(".tmp"))


def test_sigterm_mid_write_cleans_up_like_ctrl_c(tmp_path):
    code, said = _write_then_sigterm(tmp_path, "handler")
    assert code == 143 and said.split() == ["Terminated", str(int(signal.SIGTERM))]
    assert temporaries(tmp_path) == [] and not (tmp_path / "mesh.obj").exists()


def test_without_the_handler_sigterm_leaves_a_temporary_that_a_rerun_removes(tmp_path):
    from occrecon.io.atomic import write_bytes_atomic

    code, _ = _write_then_sigterm(tmp_path, "none")
    assert code == -signal.SIGTERM
    (left,) = temporaries(tmp_path)  # what SIGKILL, SIGTERM without the handler, or a power cut leave
    write_bytes_atomic(tmp_path / "mesh.obj", b"done")  # the rerun: the writer's process is gone
    assert temporaries(tmp_path) == [] and (tmp_path / "mesh.obj").read_bytes() == b"done"


def test_stale_temporaries_are_told_apart_from_live_ones(tmp_path, monkeypatch):
    from occrecon.io import atomic

    host = atomic._host_tag()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {
        f".mesh.obj.{dead.pid}-{host}.abcd_123.tmp": "removed: this machine, process gone",
        f".mesh.obj.{os.getpid()}-{host}.efgh_456.tmp": "kept: our own write in progress",
        f".mesh.obj.{dead.pid}-0badf00d.ijkl_789.tmp": "kept: another machine's, recent",
        ".mesh.obj.mnop_012.tmp": "kept: untagged (older occrecon), recent",
        ".mesh.obj.ply.qrst_345.tmp": "kept: another output's",
        ".other.obj.uvwx_678.tmp": "kept: another output's",
        ".mesh.obj.notes.txt": "kept: not ours",
    }
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    removed = atomic.remove_stale_temporaries(tmp_path / "mesh.obj")
    assert [p.name for p in removed] == [f".mesh.obj.{dead.pid}-{host}.abcd_123.tmp"]
    old = time.time() - atomic.STALE_AFTER_S - 1
    for name in names:
        if (tmp_path / name).exists():
            os.utime(tmp_path / name, (old, old))
    atomic._listed.clear()
    removed = sorted(p.name for p in atomic.remove_stale_temporaries(tmp_path / "mesh.obj"))
    assert removed == sorted([f".mesh.obj.{dead.pid}-0badf00d.ijkl_789.tmp", ".mesh.obj.mnop_012.tmp"])
    assert (tmp_path / f".mesh.obj.{os.getpid()}-{host}.efgh_456.tmp").exists()  # ours, whatever its age
    assert (tmp_path / ".mesh.obj.ply.qrst_345.tmp").exists() and (tmp_path / ".other.obj.uvwx_678.tmp").exists()


def test_a_full_disk_mid_write_leaves_neither_file_nor_temporary(tmp_path, monkeypatch):
    from occrecon.io import atomic

    def full(fd, data):
        os.write(fd, bytes(data[:3]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_write_all", full)
    with pytest.raises(OSError):
        atomic.write_bytes_atomic(tmp_path / "mesh.obj", b"0123456789")
    assert list(tmp_path.iterdir()) == []


def test_install_sigterm_handler_outside_the_main_thread_does_nothing():
    from occrecon.io.atomic import install_sigterm_handler

    before = signal.getsignal(signal.SIGTERM)
    result = _finishes(install_sigterm_handler)
    assert result == {"value": None} and signal.getsignal(signal.SIGTERM) is before


def test_a_flat_voxel_grid_is_never_padded_into_a_huge_cube(tmp_path):
    """A 1x1x200000 grid (200 kB) would be a 200000³ cube (8 PB) if the padding were made."""
    from occrecon.preprocess.voxels import _pad_to_cube, prepare_voxels, resample_occupancy

    flat = np.zeros((1, 3, 200_000), dtype=bool)
    flat[0, 1, 1000:150_000] = True
    path = tmp_path / "flat.npy"
    np.save(path, flat)
    prepared = prepare_voxels(read_voxels(path), resolution=32)
    assert prepared.preview.shape == (32, 32, 32) and prepared.preview[:, 15:17, 0:24].any()
    rng = np.random.default_rng(0)
    for shape in [(5, 9, 13), (40, 3, 17), (1, 1, 50), (100, 31, 2)]:
        grid = rng.random(shape) < 0.3
        reference = resample_occupancy(_pad_to_cube(grid)[0], 32)  # what padding first gives
        assert np.array_equal(prepare_voxels(grid, resolution=32).preview, reference)


def test_a_corrupt_tiff_says_one_line_and_libtiff_says_nothing(tmp_path, capfd):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(buf, format="TIFF", compression="tiff_lzw")
    data = bytearray(buf.getvalue())
    data[40:56] = b"\xff" * 16  # inside the LZW strip: libtiff prints "Using code not yet in table." on fd 2
    path = tmp_path / "scan.tif"
    path.write_bytes(bytes(data))
    assert "corrupt image data" in read_clean(read_image, path)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    print("stderr still works", file=sys.stderr)
    assert capfd.readouterr().err == "stderr still works\n"


def test_ascii_pcd_rows_are_parsed_strictly(tmp_path):
    """open3d left an unparsable value uninitialised: a different cloud on every read."""
    rows = "\n".join(f"{x:.4f} {y:.4f} {z:.4f}" for x, y, z in sphere_points(20))
    good = tmp_path / "good.pcd"
    good.write_bytes(_pcd("ascii", 20, rows.encode() + b"\n"))
    np.testing.assert_allclose(read_points(good).points, sphere_points(20), atol=1e-4)
    lines = rows.split("\n")
    lines[5] = "0.16021\xd0\x8f]\xc7Q$G\xe3@C\x00\x02kn4163 -0.8181 0.5522"
    bad = tmp_path / "bad.pcd"
    bad.write_bytes(_pcd("ascii", 20, "\n".join(lines).encode("latin-1") + b"\n"))
    assert "line 17 is not numeric" in read_clean(read_points, bad)  # 11 header lines, then the 6th row
    short = tmp_path / "short.pcd"
    short.write_bytes(_pcd("ascii", 20, "\n".join(lines[:19] + [lines[19] + " 1.0"]).encode("latin-1")))
    read_clean(read_points, short)


def test_pillows_log_records_about_a_hostile_tiff_stay_off_the_terminal(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="TIFF")
    data = bytearray(buf.getvalue())
    (ifd,) = struct.unpack_from("<I", data, 4)
    (entries,) = struct.unpack_from("<H", data, ifd)
    for i in range(entries):
        at = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, at)[0] == 277:  # SamplesPerPixel
            struct.pack_into("<H", data, at + 8, 58432)  # Pillow logs "More samples per pixel than can be decoded"
    path = tmp_path / "samples.tif"
    path.write_bytes(bytes(data))
    read_clean(read_image, path)
    # pytest's own log capture would hide the last-resort handler: read in a plain interpreter.
    code = "from occrecon.io.readers import read_image\ntry:\n    read_image(__import__('sys').argv[1])\nexcept Exception as e:\n    print(e)"
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert "samples.tif: cannot be decoded as an image" in done.stdout
    assert done.stderr == ""
