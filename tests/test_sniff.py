import pytest

from mtools.errors import InputFormatError
from mtools.io.sniff import sniff_format


@pytest.mark.parametrize("head, fmt", [
    (b"MThd\x00\x00\x00\x06", "midi"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
    (b"fLaC\x00", "flac"),
    (b"OggS\x00", "ogg"),
    (b'{"notes": []}', "jsonl"),
    (b'\xef\xbb\xbf\n  {"notes": []}', "jsonl"),
    (b'<?xml version="1.0"?><!DOCTYPE score-partwise>', "musicxml"),
    (b"<score-partwise version='3.1'>", "musicxml"),
    (b"PK\x03\x04", "mxl"),
    (b"%abc\nX:1\nT:Tune\nK:G\nGABc|", "abc"),
])
def test_formats_are_recognised_by_content(head, fmt):
    assert sniff_format(head) == fmt


@pytest.mark.parametrize("head, message", [(b"", "empty"), (b"garbage\n", "not a format"),
                                           (bytes(range(256)), "not a format")])
def test_unknown_content_is_a_data_error(head, message):
    with pytest.raises(InputFormatError, match=message) as info:
        sniff_format(head, "x")
    assert info.value.exit_code == 65
