#!/usr/bin/env python3
"""Reference fixtures for topk's tokenizer.json reader (tests/test_tokenizer_hf.cpp).

Trains three small byte-level BPE tokenizers (vocabulary 2000) with the Hugging Face
`tokenizers` library on generated text, saves each through transformers (tokenizer.json and
tokenizer_config.json, as a model folder has them), and records what the library makes of ~300
test strings: the ids, the ids with special tokens read as text, with the template (BOS), what
transformers gives, and the decoded text. Offline; deterministic for a given library version.

    bpe_gpt2/    ByteLevel pre-tokenizer with GPT-2's regex; special <|endoftext|>; an added
                 non-special <tool>; a special <sep> that strips the spaces around it
    bpe_llama3/  Split with Llama-3's regex, then ByteLevel without regex; ignore_merges; a
                 TemplateProcessing that puts <|begin_of_text|> first; <|eot_id|> ...
    bpe_qwen2/   NFC normalizer; Split with Qwen2's regex (one digit per token); <|im_start|> ...

Each folder: tokenizer.json, tokenizer_config.json (and what transformers writes beside them),
cases.jsonl (a "meta" line, then {"text", "ids", ["ids_plain"], ["ids_template"],
["ids_transformers"], ["decoded"], ["decoded_skip"]} per string, fields in brackets only where
they differ from "ids" / the text, then {"decode_ids", "decoded", "decoded_skip"} lines for
random id sequences, which exercise invalid UTF-8).

Run from the repository root, where python3 has tokenizers and transformers:

    python3 tools/make_bpe_fixture.py tests/data
"""
import json
import os
import random
import sys
import unicodedata

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import tokenizers  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")

WORDS = """the of and to in is was for on that with as by at from his her it he she they we you
this which be are or an not have has had but were their one all would there been if more when
will can out up about into them than its time only new some could these two may first then do
any like my now over such our man me even most made after also did many before must through
back years where much your way well down should because each just those people how too little
state good very make world still own see men work long get here between both life being under
never day same another know while last might us great old year off come since against go came
right used take three states himself few house use during without again place around however
home small found thought went say part once general high upon school every don't does got united
left number course war until always away something fact though water less public put think
almost hand enough far took head yet government system better set told nothing night end why
called didn't eyes find going look asked later knew point next program city business give group
toward young days let room president side social given present several order national possible
rather second face per among form important often things looked early white case john become
large big need four within felt along children saw best church ever least power development light
quantum lattice kernel tensor gradient attention sparse budget selection retrieval haystack needle
tokenizer byte merge vocabulary café naïve résumé über straße façade Ångström coöperate""".split()
CODE = [
    "def f(x, y=2):\n    return x ** y + 1\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
    "if x != None and len(xs) >= 3: print(f\"{x!r} -> {xs[-1]}\")\n",
    "#include <vector>\nstd::vector<int> v{1, 2, 3};  // init\r\n",
    "SELECT id, name FROM users WHERE age > 30 ORDER BY name;\n",
    "const add = (a, b) => a + b; // arrow\n",
    "    x = [i*i for i in range(10) if i % 2 == 0]\n",
    "<div class=\"row\"><span>&nbsp;</span></div>\n",
    "$ ls -la /usr/local/bin | grep -v '^d' && echo ok\n",
    "{\"key\": [1, 2.5, -3e10, true, null], \"s\": \"a\\\"b\"}\n",
]
MULTI = ["中文", "日本語のテキスト", "한국어 문장", "Привет, мир", "Γειά σου κόσμε", "مرحبا بالعالم",
         "नमस्ते दुनिया", "עברית", "ไทย", "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "€100", "™", "→", "∑x²", "½",
         "e\u0301", "A\u030a", "\u212b", "\uac00\u11a8", "\u3000", "\u00a0", "\u2028", "ſ", "K", "Ⅻ",
         "٣٤٥", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\u200b", "\ufeff", "ﬁ", "ǅ"]
CONTRACTIONS = ["it's", "I'M", "they're", "we've", "don't", "you'll", "I'd", "She'S", "WE'LL", "'tis",
                "o'clock", "rock'n'roll", "ain't"]
PUNCT = [".", ",", "!", "?", ";", ":", "...", "--", "(", ")", "[", "]", "\"", "'", "/", "\\", "@", "#",
         "%", "&", "*", "+", "=", "<", ">", "|", "~", "`", "^", "_", "{", "}", "«", "»", "“", "”", "。", "，"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\r\n", "\n   ", "\t\t", "      ", "\n\n\n"]


def number(rng):
    k = rng.randint(0, 5)
    if k == 0: return str(rng.randint(0, 9))
    if k == 1: return str(rng.randint(10, 99999))
    if k == 2: return f"{rng.uniform(0, 1000):.{rng.randint(1, 4)}f}"
    if k == 3: return str(rng.randint(1900, 2100))
    if k == 4: return "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 14)))
    return f"{rng.randint(1, 999)}-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"


def sentence(rng, specials):
    out = []
    for _ in range(rng.randint(3, 18)):
        r = rng.random()
        if r < 0.60: w = rng.choice(WORDS)
        elif r < 0.68: w = rng.choice(CONTRACTIONS)
        elif r < 0.76: w = number(rng)
        elif r < 0.86: w = rng.choice(MULTI)
        elif r < 0.94: w = rng.choice(PUNCT)
        elif r < 0.97 and specials: w = rng.choice(specials)
        else: w = rng.choice(SPACES)
        if rng.random() < 0.1: w = w.capitalize()
        if rng.random() < 0.03: w = w.upper()
        out.append(w)
        out.append(rng.choice(SPACES) if rng.random() < 0.08 else ("" if rng.random() < 0.1 else " "))
    return "".join(out) + rng.choice([".", "!", "?", "\n", "", " "])


def corpus(seed, n, specials):
    rng = random.Random(seed)
    for _ in range(n):
        yield rng.choice(CODE) if rng.random() < 0.15 else sentence(rng, specials)


ALL_SPECIALS = ["<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|im_start|>",
                "<|im_end|>", "<sep>", "<tool>", "<|notatoken|>"]


def test_strings(seed):
    fixed = ["", " ", "  ", "\n", "\t", "a", "A", "I'M", "'s", "'S", "don't", "12345678", "1234567890123",
             "\u3000", "e\u0301", "caf\u00e9 cafe\u0301", "\u212b", "😀👍🏽👨‍👩‍👧‍👦", "a" * 300, " " * 200,
             "9" * 100, "x\n\n\ny", "trailing   ", "   leading", " \n \n ", "\r\n\r\n", "tab\tsep\t\tx",
             "<|endoftext|>", "<|endoftext|><|endoftext|>", "x<|endoftext|>y", "a <sep> b", "a<sep>b",
             " <tool> ", "<|notatoken|>", "<|eot_id|>hi<|im_end|>", "<|begin_of_text|>Hello",
             "mixed 中文 and English 123 ½ ™", "ſ K Ⅻ ٣", "\u200b\ufeff", "ﬁne ǅ", "It'S WE'LL they've",
             "a\u00a0b\u2028c", "😀" * 30, "中" * 50]
    rng = random.Random(seed)
    out = list(fixed)
    while len(out) < 300:
        k = rng.random()
        if k < 0.15: out.append(rng.choice(CODE))
        elif k < 0.25: out.append("".join(rng.choice(MULTI + PUNCT + SPACES + CONTRACTIONS) for _ in range(rng.randint(1, 12))))
        else: out.append(sentence(rng, ALL_SPECIALS))
    return out


def train(kind):
    if kind == "gpt2":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        specials = ["<|endoftext|>"]
    else:
        tok = Tokenizer(models.BPE(ignore_merges=(kind == "llama3")))
        if kind == "qwen2":
            tok.normalizer = normalizers.NFC()
        pattern = LLAMA3_PATTERN if kind == "llama3" else QWEN2_PATTERN
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        specials = (["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"] if kind == "llama3"
                    else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, min_frequency=2, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    seed = {"gpt2": 1, "llama3": 2, "qwen2": 3}[kind]
    tok.train_from_iterator(corpus(seed, 20000, specials), trainer=trainer)
    if kind == "gpt2":
        tok.add_tokens([AddedToken("<tool>", special=False, normalized=True)])
        tok.add_special_tokens([AddedToken("<sep>", lstrip=True, rstrip=True, special=True, normalized=False)])
    if kind == "llama3":
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                          pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                          special_tokens=[("<|begin_of_text|>", bos)])])
    return tok


def save(kind, tok, out):
    names = {"gpt2": dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>"),
             "llama3": dict(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"),
             "qwen2": dict(eos_token="<|im_end|>", pad_token="<|endoftext|>")}[kind]
    try:  # as a model folder has them: tokenizer.json and tokenizer_config.json from transformers
        from transformers import PreTrainedTokenizerFast
        PreTrainedTokenizerFast(tokenizer_object=tok, **names).save_pretrained(out)
    except Exception as e:  # noqa: BLE001
        print(f"  transformers could not save the tokenizer ({e}); writing the two files directly")
        tok.save(os.path.join(out, "tokenizer.json"))
        with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(names, f, indent=2)


def cases(out, strings, seed):
    tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))  # exactly the saved file
    try:
        import transformers
        from transformers import AutoTokenizer
        version = transformers.__version__
        hf = AutoTokenizer.from_pretrained(out)
    except Exception as e:  # noqa: BLE001
        print(f"  transformers could not load {out} ({e}); ids_transformers not recorded")
        version, hf = None, None
    lines = [{"meta": {"tokenizers": tokenizers.__version__, "transformers": version,
                       "unicode": unicodedata.unidata_version, "vocab": tok.get_vocab_size()}}]
    plain = hasattr(tok, "encode_special_tokens")
    for s in strings:
        ids = tok.encode(s, add_special_tokens=False).ids
        c = {"text": s, "ids": ids}
        if plain:
            tok.encode_special_tokens = True
            p = tok.encode(s, add_special_tokens=False).ids
            tok.encode_special_tokens = False
            if p != ids: c["ids_plain"] = p
        t = tok.encode(s, add_special_tokens=True).ids
        if t != ids: c["ids_template"] = t
        if hf is not None:
            h = hf(s, add_special_tokens=True)["input_ids"]
            if h != t: c["ids_transformers"] = h
        d = tok.decode(ids, skip_special_tokens=False)
        if d != s: c["decoded"] = d
        ds = tok.decode(ids, skip_special_tokens=True)
        if ds != d: c["decoded_skip"] = ds
        lines.append(c)
    rng = random.Random(seed)
    n = tok.get_vocab_size()
    for _ in range(40):  # random ids: cut characters, specials, ids past the vocabulary
        ids = [rng.randrange(n + 5) for _ in range(rng.randint(1, 12))]
        lines.append({"decode_ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                      "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    with open(os.path.join(out, "cases.jsonl"), "w", encoding="utf-8") as f:
        for c in lines:
            f.write(json.dumps(c, ensure_ascii=False, separators=(",", ":")) + "\n")
    return len(lines)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "tests/data"
    strings = test_strings(19)
    for kind in ("gpt2", "llama3", "qwen2"):
        out = os.path.join(root, "bpe_" + kind)
        os.makedirs(out, exist_ok=True)
        tok = train(kind)
        save(kind, tok, out)
        n = cases(out, strings, 100 + len(kind))
        size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
        print(f"{out}: vocab {tok.get_vocab_size()}, {n} case lines, {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
