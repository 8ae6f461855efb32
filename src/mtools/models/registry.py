"""Finding models: bundled ones, those on $MTOOLS_MODEL_PATH, and paths.

A model is an ONNX graph `<stem>.onnx` with its model card `<stem>.json`
beside it (see `ModelCard` for the card's keys).

Names. A model has a family `name` (the code that runs it, e.g.
`melody_rnn`) and an optional `config` (a variant, e.g. `attention_rnn`),
both lowercase `[a-z0-9_]+`. On the command line it is `name` or
`name:config`; its files in a registry folder are named `name` or
`name-config` (a hyphen, because `:` is not allowed in Windows file names
and a hyphen cannot occur inside a name, so the mapping is one-to-one).
`melody_rnn` alone means the card with no config (`melody_rnn.json`) if
there is one, else the family's card marked `"default": true`, else its
only card.

Registry folders are searched in order: each folder on $MTOOLS_MODEL_PATH
(os.pathsep-separated), then the bundled folder `mtools/models/bundled/`;
the first folder holding a name wins, so users can shadow bundled models.
In a registry folder a card's name and config must match its file name.
A model given as a path (`--model PATH`) may be named freely.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from mtools.errors import ModelNotFoundError, UsageError

if TYPE_CHECKING:
    from mtools.runtime import Session

MODEL_PATH_ENV = "MTOOLS_MODEL_PATH"
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
TRAINABLE = ("melody_rnn", "drums_rnn", "improv_rnn", "coconet", "music_vae", "onsets_frames",
             "onsets_frames_drums")
CARD_VERSION = 1  # the newest card layout this code reads

_SPEC = re.compile(r"([a-z0-9_]+)(?::([a-z0-9_]+))?")
_STEM = re.compile(r"([a-z0-9_]+)(?:-([a-z0-9_]+))?")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REQUIRED = object()

# Card keys: (JSON type, default or _REQUIRED). Keys not listed here are kept
# in ModelCard.extra.
_CARD_KEYS: dict[str, tuple[type, Any]] = {
    "card_version": (int, CARD_VERSION),
    "name": (str, _REQUIRED),
    "config": (str, ""),
    "default": (bool, False),
    "task": (str, _REQUIRED),
    "other_tasks": (list, ()),
    "description": (str, ""),
    "onnx_file": (str, _REQUIRED),
    "sha256": (str, _REQUIRED),
    "size_bytes": (int, _REQUIRED),
    "inputs": (list, _REQUIRED),
    "outputs": (list, _REQUIRED),
    "hyperparameters": (dict, {}),
    "encoding": (dict, {}),
    "training": (dict, {}),
    "metrics": (dict, {}),
}
_LIST_KEYS = ("other_tasks", "inputs", "outputs")


@dataclass(frozen=True)
class ModelCard:
    """A model card: everything mtools knows about one ONNX model.

    name, config: family and variant (lowercase `[a-z0-9_]+`; config "" if
        none); default: this config is the family's default.
    task: the subcommand it serves ("continue", "transcribe", ...);
        other_tasks: further subcommands it serves (coconet: "infill").
    description: one line for `mtools models`.
    onnx_file: the ONNX file's name, in the card's folder; sha256: its
        SHA-256 (lowercase hex); size_bytes: its size in bytes.
    inputs, outputs: the graph's input and output names, checked at load.
    hyperparameters: the network's dimensions and options.
    encoding: vocabulary and constants that pre/post-processing reads from
        here rather than from copies in code.
    training: data sets, split, steps, and the `mtools train ...` command that
        reproduces the model. metrics: measured figures with the command that
        measured them.
    card_version: layout version of the card. extra: unknown keys, kept.
    card_path: where the card was read from (not part of the card).
    """

    name: str
    task: str
    onnx_file: str
    sha256: str
    size_bytes: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    config: str = ""
    default: bool = False
    other_tasks: tuple[str, ...] = ()
    description: str = ""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    encoding: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    card_version: int = CARD_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    card_path: Path | None = field(default=None, compare=False)

    @property
    def spec(self) -> str:
        """The command-line name: "melody_rnn:attention_rnn" or "coconet"."""
        return f"{self.name}:{self.config}" if self.config else self.name

    @property
    def stem(self) -> str:
        """The registry file name without extension, e.g. "melody_rnn-attention_rnn"."""
        return model_stem(self.name, self.config)

    @property
    def tasks(self) -> tuple[str, ...]:
        """Every subcommand this model serves, `task` first."""
        return (self.task, *self.other_tasks)

    @classmethod
    def from_dict(cls, data: Any, *, source: str | os.PathLike[str]) -> ModelCard:
        """Validate a parsed card; `source` names it in errors and becomes
        card_path. Raises ModelNotFoundError naming the bad or missing key."""
        if not isinstance(data, dict):
            raise _card_error(source, "is not a JSON object")
        values: dict[str, Any] = {}
        for key, (kind, default) in _CARD_KEYS.items():
            if key not in data:
                if default is _REQUIRED:
                    raise _card_error(source, f"lacks the required key {key!r}")
                values[key] = dict(default) if isinstance(default, dict) else default
                continue
            values[key] = _checked_value(source, key, kind, data[key])
        _check_card_values(source, values)
        for key in _LIST_KEYS:
            values[key] = tuple(values[key])
        extra = {key: value for key, value in data.items() if key not in _CARD_KEYS}
        return cls(**values, extra=extra, card_path=Path(source))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelCard:
        """Read and validate the card at `path` (ModelNotFoundError if it
        cannot be read or is not a valid card)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            raise ModelNotFoundError(f"cannot read model card {path}: {error}") from error
        except json.JSONDecodeError as error:
            raise _card_error(path, f"is not valid JSON ({error})") from error
        return cls.from_dict(data, source=path)

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data (extra keys included, card_path not)."""
        data: dict[str, Any] = dict(self.extra)
        for key in _CARD_KEYS:
            value = getattr(self, key)
            data[key] = list(value) if isinstance(value, tuple) else value
        return data


def _card_error(source: str | os.PathLike[str], problem: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"model card {source} {problem}",
        hint="cards are written by `mtools train` and the exporters; re-export the model",
    )


def _checked_value(source: Any, key: str, kind: type, value: Any) -> Any:
    """Check one card value's JSON type (bool is not an int here)."""
    wrong = not isinstance(value, kind) or (kind is int and isinstance(value, bool))
    if kind is list and not wrong:
        wrong = not all(isinstance(item, str) for item in value)
    if wrong:
        expected = "a list of strings" if kind is list else f"a JSON {kind.__name__}"
        raise _card_error(source, f"has {key!r} = {value!r}, which is not {expected}")
    return value


def _check_card_values(source: Any, values: dict[str, Any]) -> None:
    """Checks beyond types: names, checksum format, file name, version."""
    if values["card_version"] > CARD_VERSION:
        raise ModelNotFoundError(
            f"model card {source} has card_version {values['card_version']}, newer than "
            f"this mtools reads ({CARD_VERSION})",
            hint="upgrade mtools",
        )
    if not _SPEC.fullmatch(values["name"]):
        raise _card_error(source, f"has name {values['name']!r}, not lowercase [a-z0-9_]+")
    if values["config"] and not _SPEC.fullmatch(values["config"]):
        raise _card_error(source, f"has config {values['config']!r}, not lowercase [a-z0-9_]+")
    if not _SHA256.fullmatch(values["sha256"]):
        raise _card_error(source, "has a sha256 that is not 64 lowercase hex digits")
    onnx_file = values["onnx_file"]
    if Path(onnx_file).name != onnx_file or onnx_file in ("", ".", ".."):
        raise _card_error(source, f"has onnx_file {onnx_file!r}, not a plain file name")


# ---------------------------------------------------------------- names


def parse_spec(spec: str) -> tuple[str, str]:
    """Split "family:config" (or "family") into (name, config); config is ""
    when absent. Raises UsageError if it is not a well-formed model name."""
    match = _SPEC.fullmatch(spec)
    if not match:
        raise UsageError(f"{spec!r} is not a model name (lowercase name or name:config)")
    return match.group(1), match.group(2) or ""


def model_stem(name: str, config: str = "") -> str:
    """The registry file stem for a model: "name" or "name-config"."""
    stem = f"{name}-{config}" if config else name
    if not _STEM.fullmatch(stem):
        raise UsageError(f"{name!r}/{config!r} is not a valid model name and config")
    return stem


def _stem_spec(stem: str) -> str | None:
    """"melody_rnn-basic_rnn" → "melody_rnn:basic_rnn"; None if not a stem."""
    match = _STEM.fullmatch(stem)
    if not match:
        return None
    return f"{match.group(1)}:{match.group(2)}" if match.group(2) else match.group(1)


def search_dirs() -> list[Path]:
    """Registry folders in search order: existing folders on
    $MTOOLS_MODEL_PATH, then the bundled folder."""
    listed = os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep)
    dirs = [Path(entry).expanduser() for entry in listed if entry.strip()]
    return [folder for folder in dirs if folder.is_dir()] + [BUNDLED_DIR]


# ---------------------------------------------------------------- resolving


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: its card and the ONNX file it describes."""

    card: ModelCard
    onnx_path: Path

    def verify(self) -> None:
        """Check the ONNX file's size and SHA-256 against the card; a
        missing, truncated or changed file raises ModelNotFoundError."""
        path, card = self.onnx_path, self.card
        try:
            size = path.stat().st_size
        except OSError as error:
            raise ModelNotFoundError(f"model {card.spec}: cannot read {path}: {error}") from error
        if size != card.size_bytes:
            problem = f"is {size} bytes, its card says {card.size_bytes}"
        else:
            digest = file_sha256(path)
            if digest == card.sha256:
                return
            problem = f"has sha256 {digest[:12]}…, its card says {card.sha256[:12]}…"
        raise ModelNotFoundError(
            f"model file {path} is corrupt or was changed: it {problem}",
            hint=_fix_hint(path),
        )

    def load_session(self, *, device: str | None = None, threads: int | None = None) -> Session:
        """Verify the file, then open it with the card's input/output names
        (see `mtools.runtime.load_session` for device and threads)."""
        from mtools import runtime

        self.verify()
        return runtime.load_session(
            self.onnx_path,
            inputs=self.card.inputs,
            outputs=self.card.outputs,
            device=device,
            threads=threads,
        )


def _fix_hint(path: Path) -> str:
    with open(path, "rb") as stream:
        if stream.read(40).startswith(b"version https://git-lfs"):
            return "it is a Git LFS pointer, not the model: run `git lfs pull`"
    return "reinstall mtools, or re-export the model to write a new card"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_model(spec: str, *, task: str | None = None) -> ModelRef:
    """Find a model by registry name or by path.

    `spec` is a name ("melody_rnn", "melody_rnn:basic_rnn"), looked up in
    `search_dirs()`, or a path: a folder holding exactly one model, a `.json`
    card, or an `.onnx` file with its card beside it. A spec is taken as a
    path when it holds a path separator, ends in .json/.onnx, starts with
    "." or "~", or is no valid name but exists (write `./melody_rnn` for a
    folder of that name). `task`, when given, must be one of the model's
    tasks (else UsageError). The file is not hashed here; see ModelRef.
    """
    if _looks_like_path(spec) or (not _SPEC.fullmatch(spec) and Path(spec).exists()):
        ref = _resolve_path(Path(spec).expanduser())
    elif _SPEC.fullmatch(spec):
        ref = _resolve_name(*parse_spec(spec))
    else:
        raise _unknown_model(spec)
    if task is not None and task not in ref.card.tasks:
        raise UsageError(
            f"model {ref.card.spec} does `{'`, `'.join(ref.card.tasks)}`, not `{task}`",
            hint="`mtools models` lists each model's task",
        )
    return ref


def _looks_like_path(spec: str) -> bool:
    separators = [sep for sep in (os.sep, os.altsep, "/") if sep]
    return (
        any(sep in spec for sep in separators)
        or spec.endswith((".json", ".onnx"))
        or spec.startswith((".", "~"))
    )


def _ref_for(card: ModelCard) -> ModelRef:
    """Pair a card with its ONNX file, which must exist beside it."""
    assert card.card_path is not None
    onnx_path = card.card_path.parent / card.onnx_file
    if not onnx_path.is_file():
        raise ModelNotFoundError(
            f"model card {card.card_path} names {card.onnx_file}, which is not beside it",
            hint="reinstall mtools, or re-export the model",
        )
    return ModelRef(card=card, onnx_path=onnx_path)


def _resolve_path(path: Path) -> ModelRef:
    """A user's model by path: folder, .json card, or .onnx file."""
    if path.is_dir():
        card_files = _model_cards_in(path)
        if not card_files:
            raise ModelNotFoundError(
                f"no model in {path}",
                hint="a model is NAME.onnx with its card NAME.json beside it",
            )
        if len(card_files) > 1:
            names = ", ".join(card.name for card in card_files)
            raise UsageError(f"{path} holds several models ({names}); pass the .json of one")
        return _ref_for(ModelCard.load(card_files[0]))
    if not path.exists():
        raise ModelNotFoundError(f"no model at {path}")
    if path.suffix == ".json":
        return _ref_for(ModelCard.load(path))
    if path.suffix == ".onnx":
        card_path = path.with_suffix(".json")
        if not card_path.is_file():
            raise ModelNotFoundError(
                f"{path} has no model card {card_path.name} beside it",
                hint="exporters write one with mtools.models.registry.write_card",
            )
        card = ModelCard.load(card_path)
        if card.onnx_file != path.name:
            raise ModelNotFoundError(f"model card {card_path} is for {card.onnx_file}, not {path.name}")
        return _ref_for(card)
    raise ModelNotFoundError(
        f"{path} is not a model", hint="pass a folder, a .json model card or an .onnx file"
    )


def _model_cards_in(folder: Path) -> list[Path]:
    """Card files in a folder: `X.json` with `X.onnx` beside it, so other
    JSON files (training configs, metrics) are not taken for cards."""
    return [card for card in sorted(folder.glob("*.json")) if card.with_suffix(".onnx").is_file()]


def _resolve_name(name: str, config: str) -> ModelRef:
    """A registry model by name; without config, the family's default."""
    dirs = search_dirs()
    stem = model_stem(name, config)
    path = _first_file(dirs, f"{stem}.json")
    if path is None and not config:
        path = _family_default(dirs, name)
    if path is None:
        raise _unknown_model(f"{name}:{config}" if config else name, dirs)
    return _ref_for(_load_registered(path))


def _first_file(dirs: list[Path], filename: str) -> Path | None:
    for folder in dirs:
        if (folder / filename).is_file():
            return folder / filename
    return None


def _load_registered(path: Path) -> ModelCard:
    """Load a registry card whose name and config must match its file name."""
    card = ModelCard.load(path)
    if card.stem != path.stem:
        raise ModelNotFoundError(
            f"model card {path} is for {card.spec}, but its file name says {_stem_spec(path.stem)}",
            hint=f"in a model folder, name the files {card.stem}.onnx and {card.stem}.json",
        )
    return card


def _family_default(dirs: list[Path], name: str) -> Path | None:
    """The card a bare family name means: the first (in search order) marked
    `"default": true`, else the only one. None if the family has no cards."""
    found: dict[str, Path] = {}
    for folder in dirs:
        for path in sorted(folder.glob(f"{name}-*.json")):
            if _stem_spec(path.stem) and path.stem not in found:
                found[path.stem] = path
    cards = [_load_registered(path) for path in found.values()]
    for card in cards:
        if card.default:
            return card.card_path
    if len(cards) == 1:
        return cards[0].card_path
    if not cards:
        return None
    specs = ", ".join(card.spec for card in cards)
    raise UsageError(
        f"model {name} has several configs ({specs}) and none is marked default",
        hint=f"pick one, e.g. --model {cards[0].spec}",
    )


def _unknown_model(spec: str, dirs: list[Path] | None = None) -> ModelNotFoundError:
    """ModelNotFoundError for an unknown name, suggesting close known ones."""
    dirs = search_dirs() if dirs is None else dirs
    known = sorted({s for folder in dirs for p in folder.glob("*.json") if (s := _stem_spec(p.stem))})
    families = sorted({s.split(":")[0] for s in known})
    name = spec.split(":")[0]
    if ":" in spec and name in families:
        configs = [s for s in known if s.startswith(f"{name}:")]
        message = f"model {name} has no config {spec.split(':', 1)[1]!r}; it has {', '.join(configs)}"
    elif name in TRAINABLE and name not in families:
        config = f" --config {spec.split(':', 1)[1]}" if ":" in spec else ""
        return ModelNotFoundError(f"model {spec} is not bundled with this mtools",
                                  hint=f"train it with `mtools train {name}{config} --out DIR` "
                                       "(the train extra), then pass --model DIR")
    else:
        close = difflib.get_close_matches(spec.lower(), sorted(set(known) | set(families)), n=3)
        message = f"unknown model {spec!r}"
        if close:
            message += f"; did you mean {' or '.join(close)}?"
    return ModelNotFoundError(message, hint="`mtools models` lists the models there are")


# ---------------------------------------------------------------- listing, writing


def list_models(skipped: Callable[[ModelNotFoundError], None] | None = None) -> list[ModelCard]:
    """Every registry model (bundled and on $MTOOLS_MODEL_PATH; a name found
    in an earlier folder hides later ones), sorted by task, name, config.
    A card that cannot be read raises ModelNotFoundError, or with `skipped`
    is passed to it and left out, so one bad card hides no other model."""
    found: dict[str, ModelCard] = {}
    for folder in search_dirs():
        for path in _model_cards_in(folder):
            if _stem_spec(path.stem) and path.stem not in found:
                try:
                    found[path.stem] = _load_registered(path)
                except ModelNotFoundError as error:
                    if skipped is None:
                        raise
                    skipped(error)
    return sorted(found.values(), key=lambda card: (card.task, card.name, card.config))


def write_card(card_dict: dict[str, Any], onnx_path: str | os.PathLike[str]) -> Path:
    """Write the card for an exported ONNX file as `<stem>.json` beside it.

    Fills in onnx_file, sha256 and size_bytes from the file (and card_version
    if absent), validates the result as a ModelCard, and writes all its keys
    (defaults included) as pretty
    JSON with sorted keys and a trailing newline, atomically. numpy scalars
    and arrays in the values are written as plain numbers and lists.
    Returns the card's path. For a registry folder, name the ONNX file
    `model_stem(name, config) + ".onnx"`.
    """
    onnx_path = Path(onnx_path)
    data = dict(card_dict)
    data.setdefault("card_version", CARD_VERSION)
    data["onnx_file"] = onnx_path.name
    data["size_bytes"] = onnx_path.stat().st_size
    data["sha256"] = file_sha256(onnx_path)
    card_path = onnx_path.with_suffix(".json")
    data = ModelCard.from_dict(data, source=card_path).to_dict()  # every key, explicit
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=_json_value)
    temporary = card_path.with_name(f".{card_path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text + "\n", encoding="utf-8")
        os.replace(temporary, card_path)
    finally:
        temporary.unlink(missing_ok=True)
    return card_path


def _json_value(value: Any) -> Any:
    """JSON for values json does not know: numpy scalars/arrays, paths."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} cannot go into a model card: {value!r}")
