"""The shape of a safetensors header, checked on its bytes before json parses it.

json.loads recurses once per nesting level (a 100,000-deep header raised
RecursionError) and makes a Python object per value (a 40 MB `[[],[],...]`
became 13 million lists, 1.15 GB). A valid header is small in both ways: an
object whose values are objects (tensor entries, __metadata__) whose values
are strings or lists of integers. `check` finds the structural characters
outside strings with numpy, one 1 MiB chunk at a time (no Python object per
byte, no copy of the header), and refuses anything else, before json runs.
"""
import numpy as np

__all__ = ["HeaderShapeError", "check"]

_CHUNK = 1 << 20
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
# characters that can never matter for the structure: digits, commas, whitespace, minus
_STRUCTURAL = np.ones(256, bool)
_STRUCTURAL[[ord(c) for c in "0123456789,- \t\r\n"]] = False


class HeaderShapeError(ValueError):
    """The header cannot be a valid safetensors header (the message says why)."""


def tokens(text):
    """The structural characters of JSON bytes outside strings (a string: its two quotes).

    A quote is escaped when an odd run of backslashes precedes it; the run
    and whether we are inside a string carry from one chunk to the next.
    """
    codes = np.frombuffer(text, np.uint8)
    out, run, inside = [], 0, 0
    for lo in range(0, codes.size, _CHUNK):
        chunk = codes[lo:lo + _CHUNK]
        plain = np.flatnonzero(chunk != _BACKSLASH)
        quotes = np.flatnonzero(chunk == _QUOTE)
        if quotes.size:
            k = np.searchsorted(plain, quotes) - 1   # the last plain character before each
            prev = np.where(k >= 0, plain[np.maximum(k, 0)], -1 - run)
            quotes = quotes[(quotes - 1 - prev) % 2 == 0]
        run = chunk.size - 1 - int(plain[-1]) if plain.size else run + chunk.size
        del plain
        marks = np.flatnonzero(_STRUCTURAL[chunk] & (chunk != _QUOTE))
        outside = (np.searchsorted(quotes, marks) + inside) % 2 == 0
        positions = np.concatenate([marks[outside], quotes])
        positions.sort()
        out.append(chunk[positions])
        inside = (inside + quotes.size) % 2
    return np.concatenate(out) if out else np.zeros(0, np.uint8)


def check(text):
    """Number of object members in the header bytes text; HeaderShapeError if it is no header.

    (The caller compares that count with what json returns: json keeps only
    the last of duplicate keys.)
    """
    start = bytes(text[:4096]).lstrip(b" \t\r\n")[:1]
    if start and start != b"{":   # the commonest hostile shape, refused before any scan
        raise HeaderShapeError(f"the safetensors header is not a JSON object (it starts with "
                               f"{start!r})")
    t = tokens(text)
    if not t.size or t[0] != ord("{"):
        first = bytes(t[:1]) or b"nothing"
        raise HeaderShapeError(f"the safetensors header is not a JSON object (its first "
                               f"structural character is {first!r})")
    opens = np.flatnonzero(t == ord("["))
    if opens.size and (opens[-1] + 1 >= t.size or (t[opens + 1] != ord("]")).any()):
        raise HeaderShapeError("the safetensors header has a list holding something else "
                               "than integers (only shape and data_offsets lists are valid)")
    t = t[(t == ord("{")) | (t == ord("}")) | (t == ord(":"))]
    depth = np.cumsum((t == ord("{")).astype(np.int64) - (t == ord("}")))
    deepest = int(depth.max()) if depth.size else 0
    if deepest > 2:
        raise HeaderShapeError(f"the safetensors header nests objects {deepest} deep; a valid "
                               f"one nests 2 (tensor entries and __metadata__ in the top-level "
                               f"object)")
    # outside strings a colon is a member: millions of tiny ones ({"a":{},...})
    # would take 20x the header's bytes once parsed
    colons = depth[t == ord(":")]
    top, inner = int((colons == 1).sum()), int((colons == 2).sum())
    entries = int(((t == ord("{")) & (depth == 2)).sum())
    if entries != top:
        raise HeaderShapeError(f"the safetensors header has {top} top-level members, {entries} "
                               f"of them objects; every one must be")
    if inner < 3 * (entries - 1):
        raise HeaderShapeError(f"the safetensors header has {entries} entries holding {inner} "
                               f"members; a tensor entry has 3 (dtype, shape, data_offsets)")
    return top + inner
