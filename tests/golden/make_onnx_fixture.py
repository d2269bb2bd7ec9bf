#!/usr/bin/python3
"""Make the PyTorch ONNX fixtures of tests/test_onnx.c (run once; the test
suite itself does not need PyTorch).

    /usr/bin/python3 tests/golden/make_onnx_fixture.py tests/data

Trains two small MLPs on a subset of Fashion-MNIST with Debian's
python3-torch, exports them with torch.onnx.export (opset 13) and stores the
outputs of the first N_EVAL test images as little-endian float32:

  onnx_torch_mlp.onnx      input [batch, 1, 28, 28] -> Flatten -> Linear(784, 64)
                           -> LeakyReLU(0.05) -> Linear(64, 32) -> Tanh
                           -> Linear(32, 10) -> ReLU -> Linear(10, 10) -> Softmax
                           (Gemm nodes; the final Softmax = class probabilities)
  onnx_torch_mlp.expected  N_EVAL x 10 probabilities
  onnx_torch_matmul.onnx   input [batch, 784] -> x @ W + b (MatMul + Add)
                           -> Sigmoid -> Linear(16, 10), raw outputs (no Softmax)
  onnx_torch_matmul.expected  N_EVAL x 10 outputs

Inputs are the test images' bytes / 255 (what mm_dataset_load_idx gives).
"""
import gzip
import os
import sys

import numpy as np
import torch
import torch.nn as nn

FASHION = "/usr/share/datasets/fashion-mnist"
N_TRAIN = 10000
N_EVAL = 256
EPOCHS = 3


def idx_images(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    n, rows, cols = (int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows * cols)


def idx_labels(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    return np.frombuffer(data, np.uint8, offset=8).astype(np.int64)


class MatMulNet(nn.Module):
    """First layer written as x @ W + b, so torch exports MatMul + Add."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(784, 16) * 0.05)
        self.b = nn.Parameter(torch.zeros(16))
        self.out = nn.Linear(16, 10)

    def forward(self, x):
        return self.out(torch.sigmoid(torch.matmul(x, self.w) + self.b))


def train(model, x, y, reshape):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(EPOCHS):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            xb = x[idx].reshape(-1, 1, 28, 28) if reshape else x[idx]
            opt.zero_grad()
            loss_fn(model(xb), y[idx]).backward()
            opt.step()


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/data"
    torch.manual_seed(5)
    xtr = torch.tensor(idx_images(os.path.join(FASHION, "train-images-idx3-ubyte.gz"))[:N_TRAIN],
                       dtype=torch.float32) / 255.0
    ytr = torch.tensor(idx_labels(os.path.join(FASHION, "train-labels-idx1-ubyte.gz"))[:N_TRAIN])
    xte = torch.tensor(idx_images(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz"))[:N_EVAL],
                       dtype=torch.float32) / 255.0

    body = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.LeakyReLU(0.05), nn.Linear(64, 32),
                         nn.Tanh(), nn.Linear(32, 10), nn.ReLU(), nn.Linear(10, 10))
    train(body, xtr, ytr, reshape=True)
    mlp = nn.Sequential(body, nn.Softmax(dim=1)).eval()

    mm = MatMulNet()
    train(mm, xtr, ytr, reshape=False)
    mm.eval()

    for name, model, x in (("onnx_torch_mlp", mlp, xte.reshape(-1, 1, 28, 28)),
                           ("onnx_torch_matmul", mm, xte)):
        path = os.path.join(out_dir, name + ".onnx")
        torch.onnx.export(model, x[:1], path, opset_version=13, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                          do_constant_folding=True)
        with torch.no_grad():
            y = model(x).numpy().astype("<f4")
        y.tofile(os.path.join(out_dir, name + ".expected"))
        print(path, "ops:", [n.op_type for n in __import__("onnx").load(path).graph.node])


if __name__ == "__main__":
    main()
