"""A word tokenizer whose vocabulary is built from the training instructions and saved with the
checkpoint. Words it has never seen map to <unk>; they never raise."""

from __future__ import annotations

import re

from minivla_core.errors import InstructionError

PAD, UNK = "<pad>", "<unk>"
WORD = re.compile(r"[a-z0-9]+")


def split_words(text: str) -> list[str]:
    return WORD.findall(text.lower())


class WordTokenizer:
    def __init__(self, vocab: list[str]):
        if vocab[:2] != [PAD, UNK]:
            raise ValueError(f"vocabulary must start with {PAD!r}, {UNK!r}")
        self.vocab = list(vocab)
        self.ids = {word: i for i, word in enumerate(self.vocab)}

    @classmethod
    def from_texts(cls, texts) -> "WordTokenizer":
        words = sorted({word for text in texts for word in split_words(text)})
        return cls([PAD, UNK] + words)

    def encode(self, text: str, max_tokens: int) -> tuple[list[int], list[str]]:
        """Token ids (at most max_tokens) and the words that were not in the vocabulary."""
        if not isinstance(text, str) or not split_words(text):
            raise InstructionError(f"instruction {text!r} is empty: it has no words")
        words = split_words(text)[:max_tokens]
        unknown = [w for w in words if w not in self.ids]
        return [self.ids.get(w, 1) for w in words], unknown

    def __len__(self) -> int:
        return len(self.vocab)
