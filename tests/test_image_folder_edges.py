"""Image folders a user can get wrong: a symbolic-link loop, an image too large to decode safely,
one image of another size, an empty class folder, train/ and test/ with other class names. Each is
one line naming the file or the classes (a warning for the empty folder), never a traceback."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tinybin import data
from tinybin.train import TrainConfig, load_data

from conftest import cli


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def classes(root, names=("ant", "cat"), n=2, shape=(8, 6, 3)):
    rng = np.random.default_rng(0)
    for name in names:
        for k in range(n):
            save(root / name / f"{k}.png", rng.integers(0, 256, shape, dtype=np.uint8))


def png_header(path, width, height):
    """A PNG whose header says width x height (RGB) with almost no pixel data: the size of a
    decompression bomb without the bytes (Pillow reads the size from the header)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_a_symbolic_link_loop_is_named(tmp_path):
    classes(tmp_path)
    (tmp_path / "ant" / "1.png").unlink()
    (tmp_path / "ant" / "1.png").symlink_to("loop")       # ant/1.png -> ant/loop -> ant/1.png
    (tmp_path / "ant" / "loop").symlink_to("1.png")
    with pytest.raises(ValueError, match=r"ant/1\.png is a symbolic link that leads back to itself"):
        data.load_image_folder(tmp_path, cache=False)
    for name in ("1.png", "loop"):
        (tmp_path / "ant" / name).unlink()
    (tmp_path / "bee").symlink_to("wasp")                 # a class folder that is a loop
    (tmp_path / "wasp").symlink_to("bee")
    with pytest.raises(ValueError, match=r"bee is a symbolic link that leads back to itself"):
        data.load_image_folder(tmp_path, cache=False)


@pytest.mark.parametrize("side", [20000, 10000])  # beyond Pillow's error limit; between its warning and error limits
def test_an_image_too_large_to_decode_safely_is_named_as_such(tmp_path, side):
    classes(tmp_path)
    png_header(tmp_path / "cat" / "huge.png", side, side)
    with pytest.raises(ValueError, match=rf"cat/huge\.png is too large to decode safely \({side}×{side} pixels") as info:
        data.load_image_folder(tmp_path, cache=False)
    assert "1 of the 5 image files" in str(info.value)
    assert Image.MAX_IMAGE_PIXELS == 89478485  # the limit was only lifted to read the size, and restored


def test_one_image_of_another_size_says_what_to_do(tmp_path):
    classes(tmp_path)
    save(tmp_path / "cat" / "odd.png", np.zeros((64, 64, 3), dtype=np.uint8))
    with pytest.raises(ValueError) as info:
        data.load_image_folder(tmp_path, cache=False)
    message = str(info.value)
    assert "odd.png is 64x64 (HxW)" in message and "0.png is 8x6" in message
    assert "resize that file" in message and "remove it" in message  # what a command-line user can do


def test_an_empty_class_folder_is_left_out_with_a_warning(tmp_path):
    classes(tmp_path, names=("ant", "bee", "cat"))
    for f in (tmp_path / "bee").iterdir():
        f.unlink()
    (tmp_path / "bee" / "notes.txt").write_text("no images here")
    with pytest.warns(UserWarning, match=r"class folder bee holds no \.png/\.jpg/\.jpeg files: left out, 2 classes"):
        x, y, names = data.load_image_folder(tmp_path, cache=False)
    assert names == ["ant", "cat"] and y.tolist() == [0, 0, 1, 1]  # labels stay contiguous
    with pytest.warns(UserWarning, match="bee"):  # every load says so, the cached one too
        data.load_image_folder(tmp_path)
        data.load_image_folder(tmp_path)


def test_train_and_test_with_other_class_names_say_which(tmp_path):
    classes(tmp_path / "train", names=("ant", "bee", "cat"))
    classes(tmp_path / "test", names=("ant", "cat", "dog"))
    cfg = TrainConfig(dataset="folder", data_dir=str(tmp_path), subset=None, batch_size=2)
    with pytest.raises(ValueError) as info:
        load_data(cfg)
    message = str(info.value)
    assert f"only in {tmp_path / 'train'}: bee" in message and f"only in {tmp_path / 'test'}: dog" in message
    assert "ant" not in message and "cat" not in message


def test_the_command_line_gives_one_line(tmp_path):
    classes(tmp_path / "train")
    classes(tmp_path / "test")
    png_header(tmp_path / "train" / "ant" / "huge.png", 20000, 20000)
    proc = cli("train", "--dataset", "folder", "--data-dir", tmp_path, "--subset", 0, "--batch-size", 2,
               "--depth", 8, "--out", tmp_path / "run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "huge.png is too large to decode safely" in proc.stderr
    assert not (tmp_path / "run").exists()
