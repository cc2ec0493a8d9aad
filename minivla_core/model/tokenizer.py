"""A word tokenizer whose vocabulary is built from the training instructions and saved with the
checkpoint. Words it has never seen map to <unk>; they never raise.

With stemming on, every word is cut to its Snowball (Porter 2) stem first, so "pushing", "pushes"
and "push" are one token: a paraphrase that inflects a known verb is no longer a sentence of
unknown words."""

from __future__ import annotations

import re

import snowballstemmer

from minivla_core.errors import InstructionError

PAD, UNK = "<pad>", "<unk>"
WORD = re.compile(r"[a-z0-9]+")
_ENGLISH = snowballstemmer.stemmer("english")
MAX_INSTRUCTION_CHARS = 1000


def check_instruction(text: str) -> str:
    """InstructionError unless `text` can be an instruction: not too long, no control characters (a NUL
    would silently cut the text short in ROS's C strings)."""
    if not isinstance(text, str):
        raise InstructionError(f"an instruction is text, got {type(text).__name__}")
    if len(text) > MAX_INSTRUCTION_CHARS:
        raise InstructionError(f"instruction of {len(text)} characters (limit {MAX_INSTRUCTION_CHARS})")
    if any(ord(c) < 32 and c not in "\t\n" for c in text):
        raise InstructionError(f"instruction {text!r} contains control characters (a NUL, an escape, ...)")
    return text


def split_words(text: str) -> list[str]:
    return WORD.findall(text.lower())


class WordTokenizer:
    def __init__(self, vocab: list[str], stem: bool = False):
        if vocab[:2] != [PAD, UNK]:
            raise ValueError(f"vocabulary must start with {PAD!r}, {UNK!r}")
        self.vocab = list(vocab)
        self.stem = stem
        self.ids = {word: i for i, word in enumerate(self.vocab)}

    @classmethod
    def from_texts(cls, texts, stem: bool = False) -> "WordTokenizer":
        words = sorted({word for text in texts for word in cls._terms(split_words(text), stem)})
        return cls([PAD, UNK] + words, stem)

    @staticmethod
    def _terms(words: list[str], stem: bool) -> list[str]:
        return _ENGLISH.stemWords(words) if stem else words

    def encode(self, text: str, max_tokens: int) -> tuple[list[int], list[str]]:
        """Token ids (at most max_tokens) and the words (as written) that were not in the vocabulary."""
        words = split_words(text)[:max_tokens] if isinstance(text, str) else []
        if not words:
            raise InstructionError(f"instruction {text!r} is empty: it has no words")
        terms = self._terms(words, self.stem)
        unknown = [word for word, term in zip(words, terms) if term not in self.ids]
        return [self.ids.get(term, 1) for term in terms], unknown

    def __len__(self) -> int:
        return len(self.vocab)
