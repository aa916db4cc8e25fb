"""CRC-16/CCITT-FALSE, the frame check of the bridge protocol.

Polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR; the check value
of ``b"123456789"`` is ``0x29B1``. ``binascii.crc_hqx`` computes exactly this when
seeded with 0xFFFF, so no table lives here. PROTOCOL.md explains the choice over CRC-32.
"""

from __future__ import annotations

import binascii

#: Initial register value of CRC-16/CCITT-FALSE.
CRC16_INIT = 0xFFFF


def crc16_ccitt_false(data: bytes | bytearray | memoryview) -> int:
    """Return the CRC-16/CCITT-FALSE of ``data`` as an int in 0..0xFFFF."""
    return binascii.crc_hqx(data, CRC16_INIT)
