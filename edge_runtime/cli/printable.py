"""Text from devices and files, made safe to print on a terminal.

A microcontroller's HELLO, a camera's error text or a CSV header is not ours: an escape
sequence in it would rewrite the operator's terminal (clear the screen, hide a line,
set the window title). :func:`printable` escapes every control and format character
(Unicode categories C*: C0/C1 controls, DEL, bidirectional overrides) the way
``repr`` does, and leaves the rest alone.
"""

from __future__ import annotations

import unicodedata


def printable(text: str) -> str:
    """``text`` with every control or format character escaped (``\\x1b``, ``\\u202e``)."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if unicodedata.category(ch)[0] == "C" or not ch.isprintable():
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                       else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)
