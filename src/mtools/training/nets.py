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
    STATE_NAMES = ("state_h", "state_c")
    step_only = False  # the exported graph takes any number of steps

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


MODULES: dict[str, type] = {EventLSTM.kind: EventLSTM}


def build_module(kind: str, config: dict) -> nn.Module:
    """Rebuild a module from its checkpoint's kind and config."""
    return MODULES[kind](**config)


class AttentionLSTM(nn.Module):
    """Magenta's attention_rnn network: stacked LSTM cells wrapped in
    attention over the last `attn_length` outputs (TensorFlow's
    AttentionCellWrapper). Each step: the input and the previous attention
    vector are projected to the input size; the cells run; the query (all
    cells' c and h) scores the stored outputs (v · tanh(W h_i + U q)); the
    output is a projection of the top cell's output and the new attention
    vector, and it is pushed onto the stored outputs.

    forward: inputs (batch, time, input_size) and the state tensors
    state_h/state_c (layers, batch, hidden), attention (batch, hidden),
    attention_states (batch, attn_length, hidden) → logits (batch, time,
    num_classes) and the four new state tensors.
    """

    kind = "attention_lstm"
    STATE_NAMES = ("state_h", "state_c", "attention", "attention_states")
    step_only = True  # a traced time loop would be unrolled: export one step

    def __init__(self, input_size: int, num_classes: int, hidden: int = 128, layers: int = 2,
                 dropout: float = 0.5, attn_length: int = 40):
        super().__init__()
        self.config = {"input_size": input_size, "num_classes": num_classes, "hidden": hidden,
                       "layers": layers, "dropout": dropout, "attn_length": attn_length}
        self.project_in = nn.Linear(input_size + hidden, input_size)
        self.cells = nn.ModuleList(nn.LSTMCell(input_size if i == 0 else hidden, hidden)
                                   for i in range(layers))
        self.keys = nn.Linear(hidden, hidden, bias=False)
        self.query = nn.Linear(2 * layers * hidden, hidden)
        self.score = nn.Linear(hidden, 1, bias=False)
        self.project_out = nn.Linear(2 * hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)

    def zero_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        c = self.config
        return (torch.zeros(c["layers"], batch, c["hidden"]),
                torch.zeros(c["layers"], batch, c["hidden"]),
                torch.zeros(batch, c["hidden"]),
                torch.zeros(batch, c["attn_length"], c["hidden"]))

    def forward(self, inputs, state_h, state_c, attention, attention_states):
        outputs = []
        hs, cs = list(state_h.unbind(0)), list(state_c.unbind(0))
        for t in range(inputs.shape[1]):
            x = self.project_in(torch.cat([inputs[:, t], attention], dim=1))
            for i, cell in enumerate(self.cells):
                hs[i], cs[i] = cell(x, (hs[i], cs[i]))
                x = self.dropout(hs[i]) if i + 1 < len(self.cells) else hs[i]
            query = self.query(torch.cat(cs + hs, dim=1))  # (batch, hidden)
            scores = self.score(torch.tanh(self.keys(attention_states) + query[:, None]))
            weights = torch.softmax(scores, dim=1)  # (batch, attn_length, 1)
            attention = (weights * attention_states).sum(dim=1)
            output = self.project_out(torch.cat([x, attention], dim=1))
            attention_states = torch.cat([attention_states[:, 1:], output[:, None]], dim=1)
            outputs.append(output)
        logits = self.head(self.dropout(torch.stack(outputs, dim=1)))
        return logits, torch.stack(hs), torch.stack(cs), attention, attention_states


MODULES[AttentionLSTM.kind] = AttentionLSTM
