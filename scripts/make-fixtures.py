#!/usr/bin/env python3
"""Writes fixtures/fashion-mnist: a class-balanced subset of Fashion-MNIST in the original
gzipped IDX format (the first N_TRAIN/10 training images of each class, the first N_TEST/10 test
images of each class, in their original order). Source: Debian's dataset-fashion-mnist package
(apt-get install dataset-fashion-mnist). Standard library only."""
import gzip, os, struct, sys

SRC = "/usr/share/datasets/fashion-mnist"
N_TRAIN, N_TEST = 8000, 2000

def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndims = data[3]
    dims = struct.unpack(">" + "I" * ndims, data[4:4 + 4 * ndims])
    return dims, data[4 + 4 * ndims:]

def write_idx(path, dims, payload):
    header = bytes([0, 0, 8, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims)
    # mtime=0 keeps the file byte-identical from run to run.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(header + payload)

def subset(prefix, n, out):
    (count, rows, cols), pixels = read_idx(f"{SRC}/{prefix}-images-idx3-ubyte.gz")
    _, labels = read_idx(f"{SRC}/{prefix}-labels-idx1-ubyte.gz")
    per_class, taken = n // 10, [0] * 10
    keep = []
    for i in range(count):
        if taken[labels[i]] < per_class:
            taken[labels[i]] += 1
            keep.append(i)
    size = rows * cols
    write_idx(f"{out}/{prefix}-images-idx3-ubyte.gz", (len(keep), rows, cols),
              b"".join(pixels[i * size:(i + 1) * size] for i in keep))
    write_idx(f"{out}/{prefix}-labels-idx1-ubyte.gz", (len(keep),), bytes(labels[i] for i in keep))

if __name__ == "__main__":
    if not os.path.isdir(SRC):
        sys.exit(f"{SRC} not found: apt-get install dataset-fashion-mnist")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "fashion-mnist")
    os.makedirs(out, exist_ok=True)
    subset("train", N_TRAIN, out)
    subset("t10k", N_TEST, out)
