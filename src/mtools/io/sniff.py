"""Recognise an input's format from its first bytes, the way `file` does."""

from __future__ import annotations

import re

from mtools.errors import InputFormatError

SNIFF_BYTES = 512  # how much of an input sniffing needs
SYMBOLIC_FORMATS = ("midi", "jsonl", "musicxml", "mxl", "abc")
AUDIO_FORMATS = ("wav", "flac", "ogg")
ALL_FORMATS = SYMBOLIC_FORMATS + AUDIO_FORMATS

_ABC_HEADER = re.compile(rb"^[ \t]*[XTMLKC]:", re.MULTILINE)
EXTENSIONS = {
    ".mid": "midi", ".midi": "midi", ".kar": "midi", ".jsonl": "jsonl", ".json": "jsonl",
    ".ndjson": "jsonl", ".xml": "musicxml", ".musicxml": "musicxml", ".mxl": "mxl",
    ".abc": "abc", ".wav": "wav", ".wave": "wav", ".flac": "flac", ".ogg": "ogg",
    ".oga": "ogg",
}


def sniff_format(head: bytes, name: str = "input") -> str:
    """The format of data starting with `head` (at least SNIFF_BYTES of it when
    the input is that long). Raises InputFormatError for unknown content."""
    if not head:
        raise InputFormatError(f"{name}: input is empty")
    if head.startswith(b"MThd"):
        return "midi"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"PK\x03\x04"):
        return "mxl"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 text: MusicXML is often saved so
        head = head[:len(head) // 2 * 2].decode("utf-16", "replace").encode("utf-8", "replace")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"{"):
        return "jsonl"
    if text.startswith(b"<") and (b"<score-partwise" in head or b"<score-timewise" in head
                                  or text.startswith(b"<?xml")):
        return "musicxml"
    if _ABC_HEADER.search(head):
        return "abc"
    raise InputFormatError(
        f"{name}: not a format mtools reads (MIDI, JSONL, MusicXML, ABC, WAV, FLAC, OGG); "
        f"starts with {head[:8]!r}", hint="use --from FORMAT if it is one of these")


def extensions_for(formats) -> set[str]:
    """File extensions (".mid", ...) of the given format names, for folder inputs."""
    return {ext for ext, fmt in EXTENSIONS.items() if fmt in formats}
