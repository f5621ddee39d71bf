"""Minimal safetensors reader/writer in pure Python + numpy.

Why this exists: the Python reference (engram_ref.py) must read model directories without
depending on the C++ loader or on the `safetensors` pip package (not installable here). It is
also used by make_test_model.py and the golden fidelity test to write and perturb models.

Format (https://github.com/huggingface/safetensors): 8-byte little-endian u64 header length n,
n bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
then the data buffer; offsets are relative to the start of the buffer.

Decoding: every floating dtype is returned as float32 (exact for BF16/F16/F8_E4M3), or as its
raw integer / byte array with decode=False (F8_E4M3 then comes back as uint8 bytes).
"""
import json
import os
import struct

import numpy as np

# safetensors dtype -> (numpy dtype of the stored element, element size)
_RAW = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F8_E4M3": np.dtype("u1"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "U16": np.dtype("<u2"),
    "I32": np.dtype("<i4"),
    "U32": np.dtype("<u4"),
    "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"),
    "BOOL": np.dtype("u1"),
}


def _e4m3fn_table():
    """Value of every e4m3fn byte: 1 sign, 4 exponent (bias 7), 3 mantissa bits.

    Exponent field 0 is subnormal: 2^-6 * m/8. There are no infinities; S.1111.111
    (0x7F, 0xFF) is NaN. Max finite is 0x7E = 2^8 * 1.75 = 448.
    """
    t = np.zeros(256, dtype=np.float64)
    for b in range(256):
        s = -1.0 if b & 0x80 else 1.0
        e = (b >> 3) & 0xF
        m = b & 0x7
        if e == 0xF and m == 0x7:
            t[b] = np.nan
        elif e == 0:
            t[b] = s * (m / 8.0) * 2.0 ** -6
        else:
            t[b] = s * (1.0 + m / 8.0) * 2.0 ** (e - 7)
    return t


E4M3_TABLE = _e4m3fn_table()


def bf16_bits_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x):
    """Round-to-nearest-even float32 -> bf16 bit patterns (NaN kept quiet)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    rounding = ((u >> 16) & 1) + 0x7FFF
    r = ((u + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    r[nan] = 0x7FC0
    return r


def decode(dtype, raw):
    """Raw stored array -> float32 for floating dtypes, unchanged otherwise."""
    if dtype == "BF16":
        return bf16_bits_to_f32(raw)
    if dtype == "F16":
        return raw.astype(np.float32)
    if dtype == "F8_E4M3":
        return E4M3_TABLE[raw].astype(np.float32)
    return raw


class SafetensorsFile:
    """One .safetensors file, memory-mapped; tensors are decoded on request."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise ValueError(f"{path}: shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            size = os.fstat(f.fileno()).st_size
            if n > size - 8:
                raise ValueError(f"{path}: header length {n} exceeds file size {size}")
            header = json.loads(f.read(n).decode("utf-8"))
        self.metadata = header.pop("__metadata__", None)
        self.header = header
        self.data_start = 8 + n
        self.size = size
        self._mm = np.memmap(path, dtype=np.uint8, mode="r") if size > 0 else None

    def keys(self):
        return list(self.header.keys())

    def info(self, name):
        return self.header[name]

    def raw(self, name):
        h = self.header[name]
        dt = _RAW.get(h["dtype"])
        if dt is None:
            raise ValueError(f"{self.path}: tensor {name}: unsupported dtype {h['dtype']}")
        b, e = h["data_offsets"]
        shape = tuple(h["shape"])
        count = int(np.prod(shape)) if shape else 1
        if e - b != count * dt.itemsize:
            raise ValueError(f"{self.path}: tensor {name}: {e - b} bytes for shape {shape} "
                             f"of {h['dtype']}")
        if self.data_start + e > self.size:
            raise ValueError(f"{self.path}: tensor {name} runs past the end of the file")
        buf = np.asarray(self._mm[self.data_start + b:self.data_start + e])
        return buf.view(dt).reshape(shape)

    def get(self, name):
        """Decoded tensor: float32 for F32/BF16/F16/F8_E4M3 (F64 stays float64)."""
        return decode(self.header[name]["dtype"], self.raw(name))

    def dtype(self, name):
        return self.header[name]["dtype"]


def save(path, tensors, metadata=None):
    """tensors: {name: (st_dtype, numpy array of the RAW stored element type)} or
    {name: float32/int array} (dtype inferred). Raw arrays for BF16 are uint16 bit patterns,
    for F8_E4M3 uint8 bytes."""
    inferred = {np.dtype("float32"): "F32", np.dtype("float64"): "F64",
                np.dtype("float16"): "F16", np.dtype("int64"): "I64",
                np.dtype("int32"): "I32", np.dtype("uint8"): "U8"}
    header = {}
    blobs = []
    off = 0
    for name, val in tensors.items():
        if isinstance(val, tuple):
            st, arr = val
        else:
            arr = np.asarray(val)
            st = inferred[arr.dtype]
        arr = np.ascontiguousarray(arr, dtype=_RAW[st])
        data = arr.tobytes()
        header[name] = {"dtype": st, "shape": list(arr.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    if metadata:
        header["__metadata__"] = metadata
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for d in blobs:
            f.write(d)
    os.replace(tmp, path)


def load_raw_all(path):
    """{name: (st_dtype, raw array copy)} of a whole file, for rewriting it."""
    f = SafetensorsFile(path)
    return {k: (f.dtype(k), np.array(f.raw(k))) for k in f.keys()}, f.metadata


class TensorSource:
    """Tensors by name across model.safetensors, its shards (index.json) and extra files."""

    def __init__(self, model_dir, extra_files=()):
        self.dir = model_dir
        self.files = {}
        self.where = {}
        idx = os.path.join(model_dir, "model.safetensors.index.json")
        single = os.path.join(model_dir, "model.safetensors")
        if os.path.exists(idx):
            with open(idx) as f:
                wm = json.load(f)["weight_map"]
            for name, fn in wm.items():
                self.where[name] = fn
            for fn in set(wm.values()):
                self._open(fn)
            for fn in set(wm.values()):
                for k in self.files[fn].keys():
                    if k not in wm:
                        raise ValueError(f"{fn}: tensor {k} missing from the index weight_map")
        elif os.path.exists(single):
            self._add_file("model.safetensors")
        else:
            raise FileNotFoundError(f"{model_dir}: neither model.safetensors nor "
                                    "model.safetensors.index.json")
        for fn in extra_files:
            self._add_file(fn)

    def _open(self, fn):
        if fn not in self.files:
            self.files[fn] = SafetensorsFile(os.path.join(self.dir, fn))
        return self.files[fn]

    def _add_file(self, fn):
        f = self._open(fn)
        for k in f.keys():
            self.where[k] = fn

    def __contains__(self, name):
        return name in self.where

    def file_of(self, name):
        return self.files[self.where[name]]

    def get(self, name):
        if name not in self.where:
            raise KeyError(f"tensor {name} not found in {self.dir}")
        return self.file_of(name).get(name)

    def raw(self, name):
        return self.file_of(name).raw(name)

    def dtype(self, name):
        return self.file_of(name).dtype(name)
