#!/usr/bin/python3
"""A PyTorch model's weights as a safetensors file, for tests/cli/test_convert.py.

Run with Debian's /usr/bin/python3 (python3-torch, python3-numpy):

    /usr/bin/python3 tests/golden/make_safetensors_golden.py tests/data

Trains nn.Sequential(Linear(784, 32), ReLU(), Linear(32, 16), ReLU(),
Linear(16, 10)) for one epoch on the first 6000 Fashion-MNIST training
images (pixels / 255, Adam, seed 0), then writes:

  torch_fashion_mlp.safetensors      its state_dict exactly as PyTorch names it
                                     ("0.weight", "0.bias", "2.weight", ...),
                                     F32, no metadata: what any safetensors
                                     writer produces from a PyTorch model
  torch_fashion_mlp_ref.safetensors  "logits" [200, 10] F32: the model's
                                     outputs on the first 200 Fashion-MNIST
                                     test images (t10k), computed by PyTorch

The safetensors writer below is written by hand from the format's
definition (8-byte little-endian header length, JSON header, raw
little-endian data; the Debian archive has no safetensors package), and is
reused by the test for its live PyTorch check. The test suite reads the
committed files only; it never needs PyTorch.
"""
import gzip
import json
import os
import struct
import sys

import numpy as np

FASHION = os.environ.get("MM_FASHION_DIR", "/usr/share/datasets/fashion-mnist")
ARCH = "784-32-16-10:relu"
N_REF = 200


def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> numpy array (float32 / float16 / float64 ...), in order."""
    dtypes = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype("<f8"): "F64",
              np.dtype("<i4"): "I32", np.dtype("u1"): "U8"}
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        le = a.astype(a.dtype.newbyteorder("<"), copy=False)
        raw = le.tobytes()
        header[name] = {"dtype": dtypes[le.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_idx_images(path, count):
    with gzip.open(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 0x803
        count = min(count, n)
        data = np.frombuffer(f.read(count * rows * cols), dtype=np.uint8)
    return data.reshape(count, rows * cols).astype(np.float32) / np.float32(255.0)


def read_idx_labels(path, count):
    with gzip.open(path, "rb") as f:
        magic, n = struct.unpack(">II", f.read(8))
        assert magic == 0x801
        return np.frombuffer(f.read(min(count, n)), dtype=np.uint8).astype(np.int64)


def main():
    import torch
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 10))
    x = torch.from_numpy(read_idx_images(os.path.join(FASHION, "train-images-idx3-ubyte.gz"), 6000))
    y = torch.from_numpy(read_idx_labels(os.path.join(FASHION, "train-labels-idx1-ubyte.gz"), 6000))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for i in range(0, len(x), 32):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
        loss.backward()
        opt.step()
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    write_safetensors(os.path.join(out_dir, "torch_fashion_mlp.safetensors"), sd)
    xt = torch.from_numpy(read_idx_images(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz"), N_REF))
    with torch.no_grad():
        logits = model(xt).numpy()
    write_safetensors(os.path.join(out_dir, "torch_fashion_mlp_ref.safetensors"),
                      {"logits": logits}, {"arch": ARCH, "inputs": "first %d t10k images / 255" % N_REF})
    print("wrote", list(sd), "and logits", logits.shape)


if __name__ == "__main__":
    main()
