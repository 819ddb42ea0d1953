#!/usr/bin/env python3
"""Writes tests/data/regex_onig_cases.jsonl: pre-tokenizer patterns and random tricky texts with
the matches Oniguruma gives them (each line: {"p": pattern, "t": text, "m": [[begin, end], ...]},
byte offsets, found the way the Rust onig crate's find_iter finds them, which is what the Hugging
Face tokenizers library splits with). tests/test_tokenizer_text.cpp checks topk's regex against it.

Needs libonig.so.5 (Debian: libonig5), called through ctypes with Oniguruma's default syntax and
UTF-8, as the onig crate calls it.

    python3 tools/make_regex_cases.py > tests/data/regex_onig_cases.jsonl
"""
import ctypes
import json
import random
import sys

lib = ctypes.CDLL("libonig.so.5")
ENC = ctypes.addressof(ctypes.c_void_p.in_dll(lib, "OnigEncodingUTF8"))
SYNTAX = ctypes.c_void_p.in_dll(lib, "OnigDefaultSyntax").value
assert lib.onig_initialize((ctypes.c_void_p * 1)(ENC), 1) == 0


class Region(ctypes.Structure):
    _fields_ = [("allocated", ctypes.c_int), ("num_regs", ctypes.c_int),
                ("beg", ctypes.POINTER(ctypes.c_int)), ("end", ctypes.POINTER(ctypes.c_int)),
                ("history_root", ctypes.c_void_p)]


lib.onig_region_new.restype = ctypes.POINTER(Region)
lib.onig_new.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_void_p,
                         ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
lib.onig_search.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]


class Onig:
    def __init__(self, pattern):
        self.reg = ctypes.c_void_p()
        b = pattern.encode()
        self.buf = ctypes.create_string_buffer(b, len(b))
        base = ctypes.addressof(self.buf)
        einfo = (ctypes.c_void_p * 3)()
        assert lib.onig_new(ctypes.byref(self.reg), base, base + len(b), 0, ENC, SYNTAX, einfo) == 0
        self.region = lib.onig_region_new()

    def find_iter(self, text):  # onig crate's FindMatches::next
        b = text.encode()
        buf = ctypes.create_string_buffer(b, len(b) + 1)
        base = ctypes.addressof(buf)
        out, last, skip = [], 0, False
        while last <= len(b):
            if lib.onig_search(self.reg, base, base + len(b), base + last, base + len(b), self.region, 0) < 0:
                break
            s, e = self.region.contents.beg[0], self.region.contents.end[0]
            last = e
            if s == e:
                nxt = b[last:last + 4].decode("utf-8", "ignore")[:1]
                last += len(nxt.encode()) if nxt else 1
                if skip:
                    skip = False
                    continue
            else:
                skip = True
            out.append([s, e])
        return out


PATTERNS = [
    # GPT-2 (ByteLevel's own), Llama-3, Qwen2, and relatives from released tokenizer.json files
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
    r"\s?[!-/:-~！-／：-～‘-‟　-。]+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}+", r"\s+$", r"[\r\n]",
    # the engine's other constructs
    r"a*?b", r"(ab|a)*c", r"x{2,3}?", r"(?>a+)b", r"^\s+|\s+$", r"(?i)[a-c]+", r"\d+|\D", r".+",
    r"\S+", r"(?=a)\p{L}", r"(a|ab)(c|bcd)", r"\s*", r"a?", r"(?i:S)+", r"[^a-z\s]+",
    r"\p{^L}+|\P{N}", r"[\p{Ll}\p{Lu}]+", r"\p{Zs}|\p{Cc}+|\p{So}|\p{Mn}", r"\x41|\u00e9|\x{1F600}",
    r"[\]\-a]+", r"\A\s*\p{L}|\p{L}\Z|\z", r"a|", r"(?i:[^s])+",
]
ALPHABET = ["a", "b", "c", "s", "t", "S", "T", "R", "E", "l", "L", "d", "D", "m", "'", " ", "  ",
            "\t", "\n", "\r", "\u00a0", "\u3000", "\u2028", "\u001c", "\u0085", "1", "9", "\u0663",
            "\u00b2", "\u216b", "\u4e2d", "\u6587", "\u65e5\u672c", "\u00e9", "e\u0301", "\u0301",
            "\u017f", "\u212a", "\U0001F600", "\U0001F44D\U0001F3FD", "\u200d", "_", ".", ",", "!",
            "?", "-", "/", "(", "\uff09", "\uff0c", "\u3002", "\ud55c", "\u1100\u1161", "\u03a9",
            "\u01c5", "\u02b0", "$", "\u20ac", "+", "<", "|", ">", "x", "y", "0", "ab", "xx", "\\",
            "A", "]", "\uff5a", "\ufe30"]


def main():
    rng = random.Random(19)
    for p in PATTERNS:
        r = Onig(p)
        for _ in range(24):
            t = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 24)))
            sys.stdout.write(json.dumps({"p": p, "t": t, "m": r.find_iter(t)}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
