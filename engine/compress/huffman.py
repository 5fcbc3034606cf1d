"""Huffman coding of integer symbols: the last stage of Deep Compression (MATH A7; Han et al.,
ICLR 2016), applied to the weight-sharing indices and to the gaps between nonzero positions.

A prefix code gives symbol s, of probability p_s, a codeword of l_s bits; Huffman's greedy
merge of the two rarest subtrees minimises the mean length L = sum_s p_s l_s, and

    H = - sum_s p_s log2 p_s  <=  L  <  H + 1              (bits per symbol)

with L = H exactly when every p_s is a power of 1/2. Example, counts a:8 b:4 c:2 d:1 e:1:
lengths 1 2 3 4 4, L = H = 1.875 bits against 3 for a fixed-width code of 5 symbols.

The code is CANONICAL: only the lengths come from the tree; codewords are then handed out in
order of (length, symbol), each the previous plus one, shifted left when the length grows.
So the table to store is the (symbol, length) pairs alone, and equal inputs give equal codes
whatever the tie-breaks inside the tree (those are made deterministic too: leaves in symbol
order, then merged nodes in the order they were made). Cost: O(S log S) for S distinct
symbols to build; encode and decode are pure Python, O(bits), fine for 10^5 symbols.
"""
import heapq
import math
from collections import Counter

import numpy


def code_lengths(symbol_counts):
    """{symbol: codeword length} of a Huffman tree over the symbols of positive count. One
    symbol alone gets length 1 (a codeword must have a bit)."""
    counts = {int(s): int(c) for s, c in symbol_counts.items() if c > 0}
    if len(counts) <= 1:
        return {s: 1 for s in counts}
    # (count, tie-break, symbols below): leaves first in symbol order, merges numbered after.
    heap = [(c, i, [s]) for i, (s, c) in enumerate(sorted(counts.items()))]
    heapq.heapify(heap)
    lengths = dict.fromkeys(counts, 0)
    order = len(heap)
    while len(heap) > 1:
        c1, _, below1 = heapq.heappop(heap)
        c2, _, below2 = heapq.heappop(heap)
        for s in below1 + below2:  # every symbol under the new node sits one level deeper
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, order, below1 + below2))
        order += 1
    return lengths


def canonical_code(lengths):
    """{symbol: bitstring} from {symbol: length}: in (length, symbol) order, code = previous + 1,
    shifted left by the growth in length (the module docstring)."""
    code, previous, out = 0, 0, {}
    for s, n in sorted(lengths.items(), key=lambda item: (item[1], item[0])):
        code <<= n - previous
        out[s] = format(code, f"0{n}b")
        code, previous = code + 1, n
    return out


def huffman_code(symbol_counts):
    """{symbol: bitstring}, the canonical Huffman code of ``symbol_counts`` ({int: count})."""
    return canonical_code(code_lengths(symbol_counts))


def encode(symbols, table=None):
    """(bytes, n_bits, table): the codewords of ``symbols`` (non-negative ints) in order, packed
    most significant bit first and padded with zeros to whole bytes. ``table`` defaults to the
    Huffman code of the symbols' own counts."""
    symbols = [int(s) for s in numpy.asarray(symbols).ravel().tolist()]
    if table is None:
        table = huffman_code(Counter(symbols))
    bits = "".join(map(table.__getitem__, symbols))
    n_bits = len(bits)
    padded = bits + "0" * (-n_bits % 8)  # the padding goes at the end, where decode drops it
    data = int(padded, 2).to_bytes(len(padded) // 8, "big") if n_bits else b""
    return data, n_bits, table


def decode(data, n_bits, table):
    """The int64 array of symbols that ``encode`` turned into (data, n_bits): exact."""
    bits = format(int.from_bytes(data, "big"), f"0{len(data) * 8}b")[:n_bits] if data else ""
    by_word = {word: s for s, word in table.items()}
    out, word = [], ""
    for bit in bits:  # a prefix code: the first codeword that matches is the one
        word += bit
        if word in by_word:
            out.append(by_word[word])
            word = ""
    if word:
        raise ValueError(f"decode: {len(word)} bits left over that are no codeword")
    return numpy.array(out, dtype=numpy.int64)


def _symbol_dtype(table):
    top = max(table, default=0)
    return next(d for d in (numpy.uint8, numpy.uint16, numpy.uint32, numpy.uint64)
                if top <= numpy.iinfo(d).max)


def table_bytes(table):
    """The stored form of a canonical code: a uint32 count, a uint8 symbol width, the symbols
    (the narrowest unsigned dtype that holds them) and their uint8 lengths."""
    symbols = sorted(table)
    dtype = _symbol_dtype(table)
    return (numpy.uint32(len(symbols)).tobytes() + numpy.uint8(numpy.dtype(dtype).itemsize).tobytes()
            + numpy.array(symbols, dtype).tobytes()
            + numpy.array([len(table[s]) for s in symbols], numpy.uint8).tobytes())


def table_from_bytes(raw):
    """The code that ``table_bytes`` stored (canonical: the lengths rebuild every codeword)."""
    n = int(numpy.frombuffer(raw[:4], numpy.uint32)[0])
    width = raw[4]
    dtype = {1: numpy.uint8, 2: numpy.uint16, 4: numpy.uint32, 8: numpy.uint64}[width]
    symbols = numpy.frombuffer(raw[5:5 + n * width], dtype).tolist()
    lengths = numpy.frombuffer(raw[5 + n * width:5 + n * width + n], numpy.uint8).tolist()
    return canonical_code(dict(zip(symbols, lengths)))


def encoded_bytes(data, n_bits, table):
    """Bytes to store one encoded stream whole: the payload, n_bits as a uint32, the table."""
    return len(data) + 4 + len(table_bytes(table))


def entropy(symbol_counts):
    """H = - sum p log2 p bits per symbol, the bound Huffman's mean length is within 1 of."""
    total = sum(symbol_counts.values())
    return -sum(c / total * math.log2(c / total) for c in symbol_counts.values() if c > 0)


def mean_length(symbol_counts, table):
    """L = sum p_s l_s, the mean codeword length in bits per symbol."""
    total = sum(symbol_counts.values())
    return sum(c * len(table[s]) for s, c in symbol_counts.items() if c > 0) / total
