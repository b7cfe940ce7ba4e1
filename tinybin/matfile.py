"""A reader for the numeric arrays of a MATLAB v5 ``.mat`` file, in NumPy alone.

The authors released their models as MATLAB v5 files. This reader parses only what those
files hold -- named numeric arrays, zlib-compressed or not -- so reading a model needs neither
scipy nor anything that could run code: an element of any other kind is an error naming it.

Format (MathWorks, "MAT-File Format", v5): a 128-byte header (text, version, the endian mark
``IM``), then data elements. Each element is an 8-byte tag (type, byte count) and its bytes,
padded to 8; a "small" element packs type and count into 4 bytes and its data into the next 4.
A ``miCOMPRESSED`` element is zlib-deflated bytes holding one element. A ``miMATRIX`` element
holds sub-elements: array flags (class in the low byte), dimensions, name, real part. The real
part may be stored in a smaller type than the class (a double array of 0/1 as uint8) and is
column-major.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

# data-element types -> NumPy dtypes (little-endian)
_TYPES = {1: "i1", 2: "u1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<f4", 9: "<f8", 12: "<i8", 13: "<u8"}
_MATRIX, _COMPRESSED = 14, 15
# array classes -> NumPy dtypes of the array as MATLAB sees it
_CLASSES = {6: np.float64, 7: np.float32, 8: np.int8, 9: np.uint8, 10: np.int16, 11: np.uint16,
            12: np.int32, 13: np.uint32, 14: np.int64, 15: np.uint64}


class MatFileError(ValueError):
    """The file is not a MATLAB v5 file of named numeric arrays."""


def _elements(buf: bytes, path):
    """Yield (type, payload bytes) for each data element in ``buf``."""
    pos = 0
    while pos + 8 <= len(buf):
        first = int.from_bytes(buf[pos:pos + 4], "little")
        if first >> 16:  # small element: count in the upper half, data in the next 4 bytes
            kind, count = first & 0xFFFF, first >> 16
            yield kind, buf[pos + 4:pos + 4 + count]
            pos += 8
            continue
        kind, count = first, int.from_bytes(buf[pos + 4:pos + 8], "little")
        if pos + 8 + count > len(buf):
            raise MatFileError(f"{path}: an element claims {count} bytes past the end of the file (truncated?)")
        yield kind, buf[pos + 8:pos + 8 + count]
        pos += 8 + (count if kind == _COMPRESSED else -(-count // 8) * 8)


def _matrix(payload: bytes, path):
    """(name, array) of one miMATRIX element."""
    parts = list(_elements(payload, path))
    if len(parts) < 4:
        raise MatFileError(f"{path}: a matrix element has {len(parts)} parts, expected 4 or more")
    (_, flags), (_, dims), (_, name), (kind, real) = parts[:4]
    name = name.decode("ascii", "replace")
    cls = int.from_bytes(flags[:4], "little") & 0xFF
    if cls not in _CLASSES or kind not in _TYPES or len(parts) > 4:
        raise MatFileError(f"{path}: {name!r} is not a real numeric array (class {cls}); only those are read")
    shape = tuple(int(d) for d in np.frombuffer(dims, "<i4"))
    data = np.frombuffer(real, _TYPES[kind])
    if data.size != int(np.prod(shape)):
        raise MatFileError(f"{path}: {name!r} has {data.size} values for shape {shape}")
    return name, data.astype(_CLASSES[cls]).reshape(shape, order="F")


def read_mat(path) -> dict:
    """{name: ndarray} for every array in the MATLAB v5 file at ``path``."""
    path = Path(path)
    buf = path.read_bytes()
    if len(buf) < 128 or buf[126:128] != b"IM" or not buf.startswith(b"MATLAB 5.0"):
        raise MatFileError(f"{path} is not a little-endian MATLAB v5 file")
    arrays = {}
    for kind, payload in _elements(buf[128:], path):
        if kind == _COMPRESSED:
            try:
                payload = zlib.decompress(payload)
            except zlib.error as e:
                raise MatFileError(f"{path}: a compressed element does not inflate ({e}): truncated?") from None
            kind, payload = next(_elements(payload, path), (None, b""))
        if kind != _MATRIX:
            raise MatFileError(f"{path}: an element of type {kind} where a matrix was expected")
        name, array = _matrix(payload, path)
        arrays[name] = array
    return arrays
