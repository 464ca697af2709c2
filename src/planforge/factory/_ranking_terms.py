"""Objective relevance terms: lowercased words minus stopwords, reduced by a light stemmer.

A term is a run of letters and digits; `stem()` is a deliberately crude suffix stripper (not a
linguistic stemmer), harmless because the objective and the planner go through the same one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from planforge.contract import PlannerSpec

__all__ = ["STOPWORDS", "objective_terms", "planner_terms", "stem"]

STOPWORDS: frozenset[str] = frozenset(
    {
        "a", "an", "and", "as", "at", "be", "by", "for", "from", "i", "in", "is", "it", "me",
        "my", "of", "on", "or", "our", "please", "the", "this", "to", "us", "we", "with", "your",
    }
)  # fmt: skip

_OBJECTIVE_CACHE_SIZE = 4096
_PLANNER_CACHE_SIZE = 8192
_WORD_CACHE_SIZE = 16384
_WORD = re.compile(r"[a-z0-9]+")


def stem(word: str) -> str:
    """Strip one plural and one verb/agent suffix so "rebalance", "rebalancing" and
    "rebalancer" meet; crude on purpose, and harmless because both sides use it."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    for suffix in ("ing", "ed", "er"):
        if len(word) >= len(suffix) + 3 and word.endswith(suffix):
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiou":
                word = word[:-1]  # planning -> plann -> plan
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


@lru_cache(maxsize=_WORD_CACHE_SIZE)
def _term(word: str) -> str | None:
    """`word` as a term, None for a stopword (cached: planners share most of their words, and
    the first selection of a process reads every planner's)."""
    return None if word in STOPWORDS else stem(word)


def _terms(texts: Iterable[str]) -> frozenset[str]:
    terms = (_term(word) for text in texts for word in _WORD.findall(text.lower()))
    return frozenset(term for term in terms if term is not None)


@lru_cache(maxsize=_OBJECTIVE_CACHE_SIZE)
def objective_terms(objective: str) -> frozenset[str]:
    """The objective's distinct terms (cached: the same objectives come back often)."""
    return _terms((objective,))


@lru_cache(maxsize=_PLANNER_CACHE_SIZE)
def planner_terms(spec: PlannerSpec) -> frozenset[str]:
    """Terms a planner answers to: its name, keywords, capabilities and description.

    Cached per spec (specs are frozen; the cache is looked up, never iterated)."""
    return _terms((spec.name, *spec.keywords, *spec.capabilities, spec.description))
