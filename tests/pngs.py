"""PNG files written byte by byte with the standard library only (the web load test's attacker process
imports this module and nothing heavier): a decompression-bomb header and large all-black images."""
import struct
import zlib

SIGNATURE = b'\x89PNG\r\n\x1a\n'


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type and data."""
    crc = zlib.crc32(kind + data) & 0xffffffff
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', crc)


def grey_header(width: int, height: int) -> bytes:
    """The IHDR chunk of an 8-bit greyscale image."""
    return png_chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0))


def png_header_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG (under 100 bytes) whose header claims ``width * height`` grey pixels."""
    return (SIGNATURE + grey_header(width, height) + png_chunk(b'IDAT', zlib.compress(b'\x00'))
            + png_chunk(b'IEND', b''))


def png_zeros(width: int, height: int) -> bytes:
    """A valid all-black grey PNG of ``width x height``, compressed to almost nothing."""
    compressor = zlib.compressobj(9)
    row = b'\x00' * (width + 1)  # filter byte 0, then the row
    parts = []
    rows_per_step = max(1, (1 << 24) // len(row))
    for start in range(0, height, rows_per_step):
        parts.append(compressor.compress(row * min(rows_per_step, height - start)))
    parts.append(compressor.flush())
    return (SIGNATURE + grey_header(width, height) + png_chunk(b'IDAT', b''.join(parts))
            + png_chunk(b'IEND', b''))
