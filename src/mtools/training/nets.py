"""Torch modules of the models mtools trains. Imported only by training and
export code (the `train` extra); inference runs their ONNX exports.

A checkpoint is plain data, loadable with `torch.load(weights_only=True)`:
`{"config": {...}, "state_dict": {...}, ...}`; `config` holds the keyword
arguments that rebuild the module (`build_module`).
"""

from __future__ import annotations

import torch
from torch import nn


class EventLSTM(nn.Module):
    """Magenta's event RNN: stacked LSTM over encoded event inputs, a linear
    layer to class logits. Dropout between layers and before the output
    (Magenta's dropout_keep_prob 0.5 ⇔ dropout 0.5).

    forward: inputs (batch, time, input_size), state_h/state_c (layers,
    batch, hidden) → logits (batch, time, num_classes), state_h, state_c.
    """

    kind = "event_lstm"

    def __init__(self, input_size: int, num_classes: int, hidden: int = 256, layers: int = 2,
                 dropout: float = 0.5):
        super().__init__()
        self.config = {"input_size": input_size, "num_classes": num_classes, "hidden": hidden,
                       "layers": layers, "dropout": dropout}
        self.lstm = nn.LSTM(input_size, hidden, layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, inputs: torch.Tensor, state_h: torch.Tensor, state_c: torch.Tensor):
        outputs, (state_h, state_c) = self.lstm(inputs, (state_h, state_c))
        return self.head(self.dropout(outputs)), state_h, state_c

    def zero_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.config["layers"], batch, self.config["hidden"])
        return torch.zeros(shape), torch.zeros(shape)


MODULES = {EventLSTM.kind: EventLSTM}


def build_module(kind: str, config: dict) -> nn.Module:
    """Rebuild a module from its checkpoint's kind and config."""
    return MODULES[kind](**config)
