"""Widening a trained model's GRU layers without changing what it computes (Net2Net)."""

from __future__ import annotations

import torch

from vcd.errors import ModelError
from vcd.model import AcousticModel


def widen(model: AcousticModel, hidden: int, seed: int = 0) -> AcousticModel:
    """A copy of ``model`` with ``hidden`` GRU units per direction that computes the same function.

    Each old unit keeps its weights; the new units get freshly initialised input and recurrent weights
    (torch's generator seeded with ``seed``), but every weight *from* a new unit (into the old units'
    gates, the next layer and the output layer) starts at zero, so the new units take part only as
    training moves those weights (function-preserving widening, as in Net2Net): a model that underfits
    gains capacity without starting again from scratch.
    """
    old_h = model.hparams["hidden"]
    if hidden < old_h:
        raise ModelError(f"cannot narrow a model from {old_h} to {hidden} GRU units")
    torch.manual_seed(seed)
    wide = AcousticModel(**{**model.hparams, "hidden": hidden})
    dst = wide.state_dict()
    dirs = 2 if model.rnn.bidirectional else 1
    old_rows = torch.cat([torch.arange(old_h) + g * hidden for g in range(3)])  # r, z, n gates of the old units
    old_cols = torch.cat([torch.arange(old_h) + d * hidden for d in range(dirs)])  # old units of each direction
    with torch.no_grad():
        for key, value in model.state_dict().items():
            w = dst[key]
            if key.startswith("rnn.bias"):
                w[old_rows] = value
            elif key.startswith("rnn."):  # old units' gates read the old inputs only
                if key.startswith("rnn.weight_hh"):
                    cols = torch.arange(old_h)
                else:  # the first layer reads the projection, later ones the previous layer's units
                    cols = torch.arange(w.shape[1]) if key.startswith("rnn.weight_ih_l0") else old_cols
                w[old_rows] = 0.0
                w[old_rows.unsqueeze(1), cols] = value
            elif key == "out.1.weight":  # the output reads the old units only
                w.zero_()
                w[:, old_cols] = value
            else:
                w.copy_(value)
    return wide
