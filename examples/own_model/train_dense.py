"""Trains the dense RowNet on scikit-learn's digits and saves dense.safetensors.

Stands in for the user's own training script: any script that saves a state dict works.

    python train_dense.py [--epochs 20] [--out dense.safetensors]
"""

from __future__ import annotations

import argparse

import safetensors.torch
import torch
from mynets.nets import build
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--out", default="dense.safetensors")
    args = parser.parse_args()
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(digits.target)
    # sparsearch's digits split (seed 0) holds out val and test; train on the rest alone
    rest, _ = train_test_split(range(len(y)), test_size=0.2, random_state=0, stratify=y)
    train, _ = train_test_split(rest, test_size=0.25, random_state=0, stratify=y[rest])
    torch.manual_seed(0)
    model = build(width=args.width)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(args.epochs):
        for batch in torch.randperm(len(train)).split(64):
            index = torch.tensor(train)[batch]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    safetensors.torch.save_file(model.state_dict(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
