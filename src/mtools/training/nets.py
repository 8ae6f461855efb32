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
    attention_states (batch, attn_length, hidden) and attention_keys (the
    stored outputs' keys W h_i, same shape) → logits (batch, time,
    num_classes) and the five new state tensors. The keys ride in the state
    so that a step computes one new key, not attn_length of them (at batch
    64 those were two thirds of an exported step's multiply-adds).
    """

    kind = "attention_lstm"
    STATE_NAMES = ("state_h", "state_c", "attention", "attention_states", "attention_keys")
    RING_STATES = ("attention_states", "attention_keys")  # exported as rings (training.ring)
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
                torch.zeros(batch, c["attn_length"], c["hidden"]),
                torch.zeros(batch, c["attn_length"], c["hidden"]))  # keys of zeros: no bias

    def forward(self, inputs, state_h, state_c, attention, attention_states, attention_keys):
        # Same maths as one step at a time, arranged for speed: the inputs'
        # share of project_in is one matmul over all steps, and each stored
        # output's key is computed once, when it is pushed.
        hidden = self.config["hidden"]
        weight_x, weight_a = self.project_in.weight.split(
            [self.project_in.in_features - hidden, hidden], dim=1)
        projected = nn.functional.linear(inputs, weight_x, self.project_in.bias)
        keys = attention_keys
        outputs = []
        hs, cs = list(state_h.unbind(0)), list(state_c.unbind(0))
        for t in range(inputs.shape[1]):
            x = projected[:, t] + nn.functional.linear(attention, weight_a)
            for i, cell in enumerate(self.cells):
                hs[i], cs[i] = cell(x, (hs[i], cs[i]))
                x = self.dropout(hs[i]) if i + 1 < len(self.cells) else hs[i]
            query = self.query(torch.cat(cs + hs, dim=1))  # (batch, hidden)
            scores = self.score(torch.tanh(keys + query[:, None]))
            weights = torch.softmax(scores, dim=1)  # (batch, attn_length, 1)
            attention = torch.bmm(weights.transpose(1, 2), attention_states)[:, 0]
            output = self.project_out(torch.cat([x, attention], dim=1))
            attention_states = torch.cat([attention_states[:, 1:], output[:, None]], dim=1)
            keys = torch.cat([keys[:, 1:], self.keys(output)[:, None]], dim=1)
            outputs.append(output)
        logits = self.head(self.dropout(torch.stack(outputs, dim=1)))
        return logits, torch.stack(hs), torch.stack(cs), attention, attention_states, keys


MODULES[AttentionLSTM.kind] = AttentionLSTM


class CoconetNet(nn.Module):
    """Coconet's network: a residual stack of convolutions over the (time ×
    pitch) piano roll, one channel per voice, with the mask as input (Huang
    et al. 2017, "Counterpoint by Convolution"). Its 3×3 convolutions are
    dilated along time (cycling through `dilations`) so a small stack sees
    several bars; batch norm after every convolution. The last
    len(`pitch_dilations`) residual blocks (at most half of them) look
    across the chord instead: 1×3 convolutions (one step, three pitches)
    dilated along pitch by those steps in order. 16 layers of 3×3 see ±16
    semitones, so the bass at a pitch could not see a soprano two octaves
    above it; four such blocks dilated 2, 4, 8 and 16 see across the whole
    range, for a third of the multiply-adds of as many 3×3 blocks.

    forward: pianoroll (batch, time, pitch, voices) one-hot over pitch, 0
    where unknown; mask (batch, time, pitch, voices), 1 where the model must
    predict → logits (batch, time, pitch, voices); a softmax over the pitch
    axis gives each voice's pitch at each step.
    """

    kind = "coconet_cnn"

    def __init__(self, pitches: int = 46, voices: int = 4, filters: int = 48, layers: int = 16,
                 dilations: tuple[int, ...] = (1, 2, 4, 8), pitch_dilations: tuple[int, ...] = ()):
        super().__init__()
        self.config = {"pitches": pitches, "voices": voices, "filters": filters,
                       "layers": layers, "dilations": list(dilations),
                       "pitch_dilations": list(pitch_dilations)}
        self.conv_in = nn.Conv2d(2 * voices, filters, 3, padding=1)
        self.norm_in = nn.BatchNorm2d(filters)
        self.blocks = nn.ModuleList()
        for axis, d in self.block_dilations():
            shape = {"kernel_size": (3, 3), "padding": (d, 1), "dilation": (d, 1)} \
                if axis == "time" else {"kernel_size": (1, 3), "padding": (0, d), "dilation": (1, d)}
            self.blocks.append(nn.ModuleList([
                nn.Conv2d(filters, filters, **shape), nn.BatchNorm2d(filters),
                nn.Conv2d(filters, filters, **shape), nn.BatchNorm2d(filters)]))
        self.conv_out = nn.Conv2d(filters, voices, 3, padding=1)

    def forward(self, pianoroll: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = torch.cat([pianoroll * (1 - mask), mask], dim=3).permute(0, 3, 1, 2)
        x = torch.relu(self.norm_in(self.conv_in(x)))
        for conv_a, norm_a, conv_b, norm_b in self.blocks:
            y = torch.relu(norm_a(conv_a(x)))
            x = torch.relu(x + norm_b(conv_b(y)))
        return self.conv_out(x).permute(0, 2, 3, 1)

    def block_dilations(self) -> list[tuple[str, int]]:
        """Each residual block's kind and dilation: ("time", d) for 3×3
        convolutions dilated d steps along time, ("pitch", d) for 1×3 ones
        dilated d semitones along pitch."""
        config = self.config
        count = max(0, (config["layers"] - 2) // 2)
        times, pitches = config["dilations"], list(config["pitch_dilations"])[:count // 2]
        return [("time", times[index % len(times)]) for index in range(count - len(pitches))] \
            + [("pitch", d) for d in pitches]


MODULES[CoconetNet.kind] = CoconetNet


class BarPlaying(nn.Module):
    """What every MusicVAE network does with its `embeddings`,
    `initial_state` and `decode`: play each bar from its embedding (teacher-
    forced or free), and the exported graph's forward."""

    def teacher_forced(self, z: torch.Tensor, sequence: torch.Tensor) -> torch.Tensor:
        """Logits of every step given the true previous steps of its bar."""
        batch, steps, width = sequence.shape
        bars = self.config["bars"]
        embedding = self.embeddings(z).reshape(batch * bars, -1)
        per_bar = sequence.reshape(batch * bars, steps // bars, width)
        previous = torch.cat([torch.zeros_like(per_bar[:, :1]), per_bar[:, :-1]], dim=1)
        logits = self.decode(embedding, previous, *self.initial_state(embedding))[0]
        return logits.reshape(batch, steps, -1)

    def free_running(self, z: torch.Tensor, steps: int, feature_table: torch.Tensor) -> torch.Tensor:
        """Logits (batch, steps, classes) of the decoder running free from z,
        each step's input the features (feature_table[class]) of the class
        it found most likely the step before (zero at a bar's start)."""
        batch, bars = z.shape[0], self.config["bars"]
        embedding = self.embeddings(z).reshape(batch * bars, -1)
        state_h, state_c = self.initial_state(embedding)
        previous = torch.zeros(batch * bars, 1, feature_table.shape[1], device=z.device)
        logits = []
        for _ in range(steps // bars):
            step, state_h, state_c = self.decode(embedding, previous, state_h, state_c)
            logits.append(step)
            previous = feature_table[step.argmax(dim=2)]
        return torch.cat(logits, dim=1).reshape(batch, steps, -1)

    def forward(self, sequence, z, embedding, step_inputs, state_h, state_c):
        mu, sigma = self.encode(sequence)
        embeddings = self.embeddings(z)
        state_h0, state_c0 = self.initial_state(embedding)
        logits, state_h_out, state_c_out = self.decode(embedding, step_inputs, state_h, state_c)
        return mu, sigma, embeddings, state_h0, state_c0, logits, state_h_out, state_c_out


class MusicVAENet(BarPlaying):
    """MusicVAE (Roberts et al. 2018): a bidirectional LSTM encodes a whole
    window into the mean and scale of a Gaussian over z. With one bar
    (`bars=1`, the flat decoder) the embedding is z itself; with more, a
    two-layer "conductor" LSTM, its state from tanh(dense(z)), turns z into
    one embedding per bar (the hierarchical decoder). An LSTM decoder plays
    each bar from its embedding: state from tanh(dense(embedding)), input
    the embedding and the previous step's features (zero at a bar's start),
    output the step's class logits (or a groove's 27 values).

    `stacked` (a 16-bar model built on a 2-bar one, see
    training/stacked.py): the encoder reads each bar's two-bar window (the
    bar and the next; past the end, steps whose encoder features are hot
    at `pad_hot`) as the 2-bar model reads a window, and `to_mu` turns
    each reading into the 2-bar model's code of that window (its z, of
    size conductor_hidden). The "summary", a linear map of the window's
    bar codes, gives z's mean (its scale is learned, one per dimension,
    `summary_scale`); the conductor, a linear map from z, gives each bar
    a code, which the bar decoder plays from. Linear because it works: a
    2-layer LSTM conductor and summary had reached 0.66 of steps right
    after 8 passes, where the best linear maps of this size (principal
    components, how training/stacked.py sets them) play 0.986 of them, as
    the 2-bar model's own codes do (scratch, 64 valid windows).

    forward (the exported graph: each caller asks only for what it needs):
    sequence (windows, steps, input_size) → mu, sigma (windows, z_size);
    z (batch, z_size) → embeddings (batch, bars, embedding_size);
    embedding (batch, embedding_size) → state_h0, state_c0 (layers, batch,
    dec_hidden); embedding, step_inputs (batch, time, input_size),
    state_h, state_c → logits (batch, time, num_classes), state_h_out,
    state_c_out.
    """

    kind = "music_vae"

    def __init__(self, input_size: int, num_classes: int, z_size: int = 256,
                 enc_hidden: int = 256, dec_hidden: int = 256, dec_layers: int = 2,
                 dropout: float = 0.0, bars: int = 1, conductor_hidden: int = 256,
                 stacked: bool = False, pad_hot: tuple = ()):
        super().__init__()
        self.config = {"input_size": input_size, "num_classes": num_classes, "z_size": z_size,
                       "enc_hidden": enc_hidden, "dec_hidden": dec_hidden,
                       "dec_layers": dec_layers, "dropout": dropout, "bars": bars,
                       "conductor_hidden": conductor_hidden}
        if stacked:
            if bars < 2:
                raise ValueError("a stacked MusicVAE needs bars > 1")
            self.config.update(stacked=True, pad_hot=[int(i) for i in pad_hot])
        self.encoder = nn.LSTM(input_size, enc_hidden, batch_first=True, bidirectional=True)
        if stacked:
            pad = torch.zeros(input_size)
            pad[list(self.config["pad_hot"])] = 1.0
            self.register_buffer("pad_step", pad, persistent=False)  # a constant of the graph
            self.to_mu = nn.Linear(2 * enc_hidden, conductor_hidden)  # a bar's 2-bar code
            self.summary = nn.Linear(bars * conductor_hidden, z_size)
            self.summary_scale = nn.Parameter(torch.zeros(z_size))
            self.conductor = nn.Linear(z_size, bars * conductor_hidden)
            embedding = conductor_hidden
        else:
            self.to_mu = nn.Linear(2 * enc_hidden, z_size)
            self.to_sigma = nn.Linear(2 * enc_hidden, z_size)
            embedding = z_size
        if bars > 1 and not stacked:
            self.conductor_state = nn.Linear(z_size, 2 * 2 * conductor_hidden)
            self.conductor = nn.LSTM(z_size, conductor_hidden, 2, batch_first=True)
            embedding = conductor_hidden
        self.embedding_size = embedding
        self.to_state = nn.Linear(embedding, 2 * dec_layers * dec_hidden)
        self.decoder = nn.LSTM(input_size + embedding, dec_hidden, dec_layers, batch_first=True,
                               dropout=dropout if dec_layers > 1 else 0.0)
        self.head = nn.Linear(dec_hidden, num_classes)

    def encode(self, sequence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.get("stacked"):
            return self.summarize(self.bar_encodings(sequence))
        _, (h, _) = self.encoder(sequence)
        final = torch.cat([h[0], h[1]], dim=1)  # forward and backward final states
        return self.to_mu(final), nn.functional.softplus(self.to_sigma(final))

    def summarize(self, encodings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked: bar encodings (windows · bars, 2 · enc_hidden) → z's
        mean and scale (windows, z_size)."""
        codes = self.to_mu(encodings).reshape(-1, self.config["bars"] * self.embedding_size)
        mu = self.summary(codes)
        return mu, torch.zeros_like(mu) + nn.functional.softplus(self.summary_scale)

    def bar_encodings(self, sequence: torch.Tensor) -> torch.Tensor:
        """Stacked: (windows · bars, 2 · enc_hidden), the encoder's final
        states over each bar's window (what a 2-bar model's to_mu reads)."""
        _, (h, _) = self.encoder(bar_windows(sequence, self.config["bars"], self.pad_step))
        return torch.cat([h[0], h[1]], dim=1)

    def embeddings(self, z: torch.Tensor) -> torch.Tensor:
        """(batch, bars, embedding_size): what each bar is decoded from."""
        bars = self.config["bars"]
        if bars == 1:
            return z[:, None, :]
        if self.config.get("stacked"):
            return self.conductor(z).reshape(-1, bars, self.embedding_size)
        h0, c0 = _lstm_state(torch.tanh(self.conductor_state(z)), 2, self.config["conductor_hidden"])
        outputs, _ = self.conductor(z[:, None, :].expand(-1, bars, -1).contiguous(), (h0, c0))
        return outputs

    def initial_state(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _lstm_state(torch.tanh(self.to_state(embedding)), self.config["dec_layers"],
                           self.config["dec_hidden"])

    def decode(self, embedding: torch.Tensor, step_inputs: torch.Tensor, state_h: torch.Tensor,
               state_c: torch.Tensor):
        tiled = embedding[:, None, :].expand(-1, step_inputs.shape[1], -1)
        outputs, (state_h, state_c) = self.decoder(torch.cat([step_inputs, tiled], dim=2),
                                                   (state_h, state_c))
        return self.head(outputs), state_h, state_c


def _lstm_state(flat: torch.Tensor, layers: int, hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, 2 · layers · hidden) → LSTM (h, c), each (layers, batch, hidden)."""
    state = flat.reshape(flat.shape[0], 2, layers, hidden)
    return state[:, 0].permute(1, 0, 2).contiguous(), state[:, 1].permute(1, 0, 2).contiguous()


def bar_windows(sequence: torch.Tensor, bars: int, pad_step: torch.Tensor) -> torch.Tensor:
    """A stacked model's bar windows: (windows, steps, width) → (windows ·
    bars, 2 · bar steps, width), each bar followed by the next (the last by
    `pad_step`, the features of "nothing new")."""
    batch, steps, width = sequence.shape
    size = steps // bars
    padded = torch.cat([sequence, pad_step.expand(batch, size, width)], dim=1)
    windows = torch.stack([padded[:, i * size:(i + 2) * size] for i in range(bars)], dim=1)
    return windows.reshape(batch * bars, 2 * size, width)


class PartsVAENet(BarPlaying):
    """A 16-bar MusicVAE of parts played together (trio_16bar: melody, bass
    and drums), stacked on a trained 2-bar model per part. It is stacked
    as MusicVAENet's `stacked` is on one (see training/stacked.py).

    Per part (`parts`: its name, its columns of the input features and of
    the logits, and its 2-bar model's sizes): the 2-bar model's encoder
    reads each bar's 2-bar window of the part and its to_mu gives the bar's
    code; `squeeze`, a linear map per part shared by its bars, keeps the
    code's `squeeze` main directions (all 16 bars of 3 parts' whole codes
    would need a summary of 12,288 inputs). The summary, a linear map of
    every bar's squeezed codes, gives z's mean (its scale `summary_scale`);
    the conductor maps z back to them, `unsqueeze` each to its part's code,
    and the part's 2-bar decoder plays its bar.

    The parts run side by side in one graph with MusicVAENet's interface:
    a bar's embedding is the parts' codes end to end (conductor_hidden
    wide), the decoder state the parts' states end to end (dec_hidden
    wide), the logits the parts' logits end to end, each step input's
    columns going to their part. Encoders are registered before decoders,
    the order the graph runs them (warm_start reads LSTMs in that order).
    dec_hidden, conductor_hidden and stacked follow from `parts` and are
    accepted so that a checkpoint's config rebuilds the network."""

    kind = "music_vae_parts"

    def __init__(self, input_size: int, num_classes: int, parts: list, z_size: int = 768,
                 bars: int = 16, squeeze: int = 32, dec_layers: int = 2, dropout: float = 0.0,
                 pad_hot: tuple = (), stacked: bool = True, dec_hidden: int | None = None,
                 conductor_hidden: int | None = None):
        super().__init__()
        parts = [dict(part) for part in parts]
        codes = [int(part["z_size"]) for part in parts]
        self.inputs = [tuple(part["inputs"]) for part in parts]
        self.config = {"input_size": input_size, "num_classes": num_classes, "parts": parts,
                       "z_size": z_size, "bars": bars, "squeeze": squeeze,
                       "dec_layers": dec_layers, "dropout": dropout,
                       "pad_hot": [int(i) for i in pad_hot], "stacked": True,
                       "dec_hidden": sum(int(part["dec_hidden"]) for part in parts),
                       "conductor_hidden": sum(codes)}
        pad = torch.zeros(input_size)
        pad[list(self.config["pad_hot"])] = 1.0
        self.register_buffer("pad_step", pad, persistent=False)
        widths = [stop - start for start, stop in self.inputs]
        self.encoders = nn.ModuleList(
            nn.LSTM(width, part["enc_hidden"], batch_first=True, bidirectional=True)
            for width, part in zip(widths, parts))
        self.to_mu = nn.ModuleList(nn.Linear(2 * part["enc_hidden"], code)
                                   for part, code in zip(parts, codes))
        self.squeeze = nn.ModuleList(nn.Linear(code, squeeze) for code in codes)
        self.summary = nn.Linear(bars * len(parts) * squeeze, z_size)
        self.summary_scale = nn.Parameter(torch.zeros(z_size))
        self.conductor = nn.Linear(z_size, bars * len(parts) * squeeze)
        self.unsqueeze = nn.ModuleList(nn.Linear(squeeze, code) for code in codes)
        self.to_state = nn.ModuleList(nn.Linear(code, 2 * dec_layers * part["dec_hidden"])
                                      for part, code in zip(parts, codes))
        self.decoders = nn.ModuleList(
            nn.LSTM(width + code, part["dec_hidden"], dec_layers, batch_first=True,
                    dropout=dropout if dec_layers > 1 else 0.0)
            for width, code, part in zip(widths, codes, parts))
        self.heads = nn.ModuleList(nn.Linear(part["dec_hidden"], part["classes"][1] -
                                             part["classes"][0]) for part in parts)
        self.codes = codes
        self.hidden = [int(part["dec_hidden"]) for part in parts]
        self.embedding_size = sum(codes)

    def part_inputs(self, features: torch.Tensor) -> list[torch.Tensor]:
        return [features[..., start:stop] for start, stop in self.inputs]

    def bar_encodings(self, sequence: torch.Tensor) -> list[torch.Tensor]:
        """Per part (windows · bars, 2 · enc_hidden): its encoder's final
        states over each bar's window."""
        windows = bar_windows(sequence, self.config["bars"], self.pad_step)
        encodings = []
        for encoder, inputs in zip(self.encoders, self.part_inputs(windows)):
            _, (h, _) = encoder(inputs)
            encodings.append(torch.cat([h[0], h[1]], dim=1))
        return encodings

    def summarize(self, encodings: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per part bar encodings → z's mean and scale (windows, z_size)."""
        bars = self.config["bars"]
        squeezed = [squeeze(to_mu(e)).reshape(-1, bars, self.config["squeeze"])
                    for to_mu, squeeze, e in zip(self.to_mu, self.squeeze, encodings)]
        mu = self.summary(torch.cat(squeezed, dim=2).reshape(-1, self.summary.in_features))
        return mu, torch.zeros_like(mu) + nn.functional.softplus(self.summary_scale)

    def encode(self, sequence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.summarize(self.bar_encodings(sequence))

    def embeddings(self, z: torch.Tensor) -> torch.Tensor:
        """(batch, bars, conductor_hidden): each bar's part codes end to end."""
        c = self.config
        squeezed = self.conductor(z).reshape(-1, c["bars"], len(self.codes), c["squeeze"])
        return torch.cat([unsqueeze(squeezed[:, :, k])
                          for k, unsqueeze in enumerate(self.unsqueeze)], dim=2)

    def initial_state(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = [_lstm_state(torch.tanh(to_state(code)), self.config["dec_layers"], hidden)
                  for to_state, code, hidden in zip(self.to_state, embedding.split(self.codes, 1),
                                                    self.hidden)]
        return torch.cat([h for h, _ in states], dim=2), torch.cat([c for _, c in states], dim=2)

    def decode(self, embedding: torch.Tensor, step_inputs: torch.Tensor, state_h: torch.Tensor,
               state_c: torch.Tensor):
        logits, hs, cs = [], [], []
        for k, (code, inputs, h, c) in enumerate(zip(
                embedding.split(self.codes, 1), self.part_inputs(step_inputs),
                state_h.split(self.hidden, 2), state_c.split(self.hidden, 2))):
            tiled = code[:, None, :].expand(-1, inputs.shape[1], -1)
            outputs, (h, c) = self.decoders[k](torch.cat([inputs, tiled], dim=2),
                                               (h.contiguous(), c.contiguous()))
            logits.append(self.heads[k](outputs))
            hs.append(h)
            cs.append(c)
        return torch.cat(logits, dim=2), torch.cat(hs, dim=2), torch.cat(cs, dim=2)


MODULES[MusicVAENet.kind] = MusicVAENet
MODULES[PartsVAENet.kind] = PartsVAENet
MODULES["music_vae_flat"] = MusicVAENet  # checkpoints written before the hierarchical decoder


class OnsetsFramesNet(nn.Module):
    """Onsets and Frames (Hawthorne et al. 2018), sized for a CPU: one
    convolutional acoustic stack shared by the heads (the paper gives each
    head its own), then per head:
    onset: bidirectional LSTM → keys logits;
    offset, velocity: linear from the acoustic features;
    frame: linear from the acoustic features, joined with the onset and
    offset probabilities (gradients stopped, as in the paper) through a
    bidirectional LSTM → keys logits.
    The acoustic stack: two 3×3 convolutions of `channels[0]`, max-pool
    over frequency, one of `channels[1]`, max-pool, then a linear layer
    of `acoustic` units; batch norm and ReLU after each.

    forward: mel (batch, frames, mel_bins) → onset_logits, frame_logits,
    offset_logits, velocity, each (batch, frames, keys).
    """

    kind = "onsets_frames"

    def __init__(self, mel_bins: int = 229, keys: int = 88, channels: tuple = (16, 32),
                 acoustic: int = 256, lstm: int = 96, dropout: float = 0.25):
        super().__init__()
        c0, c1 = channels
        self.config = {"mel_bins": mel_bins, "keys": keys, "channels": [c0, c1],
                       "acoustic": acoustic, "lstm": lstm, "dropout": dropout}

        def conv(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        self.convs = nn.Sequential(*conv(1, c0), *conv(c0, c0), nn.MaxPool2d((1, 2)),
                                   nn.Dropout(dropout), *conv(c0, c1), nn.MaxPool2d((1, 2)),
                                   nn.Dropout(dropout))
        self.acoustic = nn.Sequential(nn.Linear(c1 * (mel_bins // 4), acoustic), nn.ReLU(),
                                      nn.Dropout(dropout))
        self.onset_rnn = nn.LSTM(acoustic, lstm, batch_first=True, bidirectional=True)
        self.onset_head = nn.Linear(2 * lstm, keys)
        self.offset_head = nn.Linear(acoustic, keys)
        self.velocity_head = nn.Linear(acoustic, keys)
        self.frame_in = nn.Linear(acoustic, keys)
        self.frame_rnn = nn.LSTM(3 * keys, lstm, batch_first=True, bidirectional=True)
        self.frame_head = nn.Linear(2 * lstm, keys)

    def forward(self, mel: torch.Tensor):
        batch, frames, _ = mel.shape
        x = self.convs(mel[:, None])  # (batch, c1, frames, mel_bins // 4)
        x = self.acoustic(x.permute(0, 2, 1, 3).reshape(batch, frames, -1))
        onset = self.onset_head(self.onset_rnn(x)[0])
        offset = self.offset_head(x)
        velocity = self.velocity_head(x)
        joined = torch.cat([torch.sigmoid(self.frame_in(x)), torch.sigmoid(onset).detach(),
                            torch.sigmoid(offset).detach()], dim=2)
        frame = self.frame_head(self.frame_rnn(joined)[0])
        return onset, frame, offset, velocity


MODULES[OnsetsFramesNet.kind] = OnsetsFramesNet
