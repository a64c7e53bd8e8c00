"""The synthetic movie-review generator: deterministic sentiment sentences (``data=synthetic``).

Negation, contrast and intensity decide a large share of the labels, so counting keywords does not
solve it. ``label_noise`` flips labels of the stream it is given (the data layer passes it for the
train split only). Pure Python: no datasets, no torch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["KINDS", "ReviewRecord", "generate_review_records", "generate_reviews"]


KINDS = ("plain", "negation", "contrast", "intensity")
# Share of each kind. Plain reviews are keyword-solvable; the other 60 % are not (a bag-of-words
# model sits near chance on them), which caps bag-of-words accuracy around 0.70.
_KIND_WEIGHTS = (0.40, 0.20, 0.20, 0.20)

_FILMS = [
    "movie", "film", "picture", "sequel", "documentary", "thriller", "comedy", "drama",
    "feature", "remake", "prequel", "adaptation", "blockbuster", "indie film", "biopic",
    "animated film", "western", "musical",
]  # fmt: skip
_ASPECTS = [
    "acting", "plot", "script", "soundtrack", "cinematography", "pacing", "dialogue", "ending",
    "characters", "visuals", "direction", "humour", "score", "cast", "storyline", "editing",
    "lead performance", "set design", "camera work", "screenplay", "final act", "opening scene",
    "villain", "costumes", "special effects", "supporting cast", "story", "premise",
]  # fmt: skip
_POS_ADJ = [
    "good", "great", "brilliant", "wonderful", "superb", "excellent", "delightful", "gripping",
    "moving", "charming", "clever", "stunning", "beautiful", "fantastic", "engaging",
    "memorable", "impressive", "enjoyable", "fresh", "funny", "touching", "compelling",
    "captivating", "polished", "inventive", "thrilling", "sharp", "gorgeous", "heartfelt",
    "smart", "lovely", "solid",
]  # fmt: skip
_NEG_ADJ = [
    "bad", "terrible", "awful", "dull", "boring", "tedious", "clumsy", "lifeless",
    "forgettable", "predictable", "messy", "weak", "flat", "painful", "dreadful", "bland",
    "shallow", "awkward", "mediocre", "disappointing", "lazy", "confusing", "sloppy", "stale",
    "cheap", "tiresome", "pointless", "uninspired", "clunky", "irritating", "hollow", "silly",
]  # fmt: skip
_POS_NOUN = [
    "masterpiece", "triumph", "gem", "delight", "classic", "joy to watch", "treat", "success",
    "must-see", "work of art",
]  # fmt: skip
_NEG_NOUN = [
    "disaster", "mess", "waste of time", "letdown", "snoozefest", "failure", "trainwreck",
    "chore to sit through", "dud", "misfire",
]  # fmt: skip
_POS_VERB = ["enjoyed", "loved", "liked", "appreciated", "admired", "savoured"]
_NEG_VERB = ["hated", "disliked", "regretted watching", "resented", "minded", "endured"]
_BASE_VERB = {
    "enjoyed": "enjoy", "loved": "love", "liked": "like", "appreciated": "appreciate",
    "admired": "admire", "savoured": "savour", "hated": "hate", "disliked": "dislike",
    "regretted watching": "regret watching", "resented": "resent", "minded": "mind",
    "endured": "have to endure",
}  # fmt: skip
_POS_MOMENT = ["memorable", "funny", "exciting", "clever", "touching", "beautiful", "tense"]
_NEG_MOMENT = ["dull", "boring", "wasted", "awkward", "tedious", "cringeworthy", "pointless"]
_STRONG = [
    "absolutely", "utterly", "truly", "incredibly", "extraordinarily", "thoroughly",
    "remarkably", "exceptionally", "completely", "deeply", "genuinely", "spectacularly",
]  # fmt: skip
_WEAK = [
    "slightly", "somewhat", "a little", "mildly", "a bit", "marginally", "faintly",
    "sort of", "occasionally", "a tad",
]  # fmt: skip
_NEGATORS = [
    "not", "never", "hardly", "far from", "anything but", "by no means", "not exactly",
    "not particularly", "in no way", "not at all", "scarcely", "not remotely",
]  # fmt: skip
_NOUN_NEGATORS = ["hardly a", "far from a", "not exactly a", "by no means a", "no", "not a"]
_COPULA = ["is", "was", "feels", "felt", "seems", "comes across as"]
_COPULA_PLURAL = ["are", "were", "feel", "felt", "seem", "come across as"]
_PLURAL_ASPECTS = {"characters", "visuals", "costumes", "special effects"}
_OPENERS = [
    "Just saw this {film}.", "So, about this {film}.", "Quick review.", "My two cents.",
    "Where to begin.", "Okay, here goes.", "Long-time lurker, first review.",
    "Finally got around to this {film}.", "A few thoughts on this {film}.",
]  # fmt: skip
_PREFIXES = ["Honestly, ", "Overall, ", "In the end, ", "To be fair, ", "Frankly, ", "Well, "]
_FILLERS = [
    "I watched this on a rainy sunday.",
    "My sister picked it for movie night.",
    "It runs a little over two hours.",
    "I saw it at a small cinema downtown with a friend.",
    "The trailer had been everywhere for weeks.",
    "It is based on a novel I have not read.",
    "We watched it with the subtitles on.",
    "I went in knowing almost nothing about it.",
    "It was part of a double feature at the local theatre.",
    "The story is set in a small coastal town.",
    "It follows two brothers who run a bakery in {city}.",
    "The director's previous {film} came out in {year}.",
    "It premiered at a festival in {city} back in {year}.",
    "I rented it on a long flight to {city}.",
    "The {film} was shot mostly in {city}.",
    "Most of it takes place over a single weekend.",
    "My parents had recommended it to me years ago.",
    "There is a cameo from a famous singer halfway through.",
    "It is the third {film} from this studio this year.",
    "The lead actor also co-wrote it.",
    "I had some popcorn and a large soda.",
    "The runtime is about ninety minutes.",
]
_CITIES = ["Lisbon", "Toronto", "Osaka", "Berlin", "Nairobi", "Austin", "Glasgow", "Lima", "Oslo"]
_NEUTRAL_CLOSERS = [
    "That's my take.", "Make of that what you will.", "Your mileage may vary.",
    "Just my opinion.", "That is all I have to say.", "Anyway, those are my thoughts.",
    "Curious what others think.",
]  # fmt: skip
_POS_CLOSERS = [
    "Highly recommended.", "Go see it.", "I'd watch it again.", "Worth every minute.",
    "A real pleasure.", "I left the cinema smiling.",
]  # fmt: skip
_NEG_CLOSERS = [
    "Avoid it.", "Skip this one.", "What a waste of an evening.", "I want my two hours back.",
    "Not worth the ticket.", "I nearly walked out.",
]  # fmt: skip


@dataclass(frozen=True)
class ReviewRecord:
    """One generated review. ``label`` is what the split carries (after noise), ``clean_label``
    what the text says; ``kind`` is how the text encodes it (one of :data:`KINDS`)."""

    text: str
    label: int
    kind: str
    clean_label: int

    @property
    def flipped(self) -> bool:
        return self.label != self.clean_label


def _adj(rng: random.Random, positive: bool) -> str:
    return rng.choice(_POS_ADJ if positive else _NEG_ADJ)


def _subject(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.7:
        return f"the {rng.choice(_ASPECTS)}"
    if r < 0.9:
        return f"the {rng.choice(_FILMS)}"
    return "it"


def _subject_verb(rng: random.Random) -> str:
    """'<subject> <copula>' with number agreement."""
    subject = _subject(rng)
    plural = subject[4:] in _PLURAL_ASPECTS
    return f"{subject} {rng.choice(_COPULA_PLURAL if plural else _COPULA)}"


def _clause(rng: random.Random, positive: bool, intensifier: str = "") -> str:
    """'<subject> <copula> [intensifier] <adjective>' with the given polarity."""
    adj = f"{intensifier} {_adj(rng, positive)}".strip()
    return f"{_subject_verb(rng)} {adj}"


def _negated_clause(rng: random.Random, positive: bool) -> str:
    """A clause whose polarity is ``positive`` although its sentiment word has the opposite one."""
    r = rng.random()
    if r < 0.45:
        return f"{_subject_verb(rng)} {rng.choice(_NEGATORS)} {_adj(rng, not positive)}"
    if r < 0.6:
        noun = rng.choice(_NEG_NOUN if positive else _POS_NOUN)
        film = rng.choice(["it", "this " + rng.choice(_FILMS)])
        neg = rng.choice(_NOUN_NEGATORS)
        if neg == "no":
            return f"{film} is no {noun}"
        return f"{film} is {neg} {noun}"
    if r < 0.75:
        verb = rng.choice(_NEG_VERB if positive else _POS_VERB)
        lead = rng.choice(["I can't say I", "I didn't", "I did not", "I never", "nobody I know"])
        if lead == "I didn't" or lead == "I did not":
            verb = _BASE_VERB[verb]
        return f"{lead} {verb} it"
    if r < 0.9:
        moment = rng.choice(_NEG_MOMENT if positive else _POS_MOMENT)
        return rng.choice(
            [
                f"there wasn't a single {moment} moment",
                f"there is not one {moment} scene in it",
                f"I couldn't find a single {moment} minute",
                f"not one scene felt {moment}",
            ]
        )
    word = _adj(rng, not positive)
    return rng.choice(
        [
            f"nothing about it felt {word}",
            f"I wouldn't call {_subject(rng)} {word}",
            f"calling {_subject(rng)} {word} would be wrong",
            f"no one could call {_subject(rng)} {word}",
        ]
    )


def _contrast(rng: random.Random, positive: bool) -> str:
    """Two clauses of opposite polarity; the grammar (not the position) says which one decides."""
    a = _clause(rng, not positive)  # conceded
    b = _clause(rng, positive)  # decisive
    r = rng.randrange(9)
    if r == 0:
        return f"{a}, but {b}."
    if r == 1:
        return f"although {a}, {b}."
    if r == 2:
        return f"{a}. However, {b}."
    if r == 3:
        return f"{b}, even though {a}."
    if r == 4:
        return f"{a}. Still, {b}."
    if r == 5:
        return f"while {a}, {b}."
    if r == 6:
        return f"{b}, although {a}."
    if r == 7:
        part = rng.choice(["start", "first half", "opening", "middle stretch", "trailer"])
        ending = rng.choice(["ending", "second half", "finale", "final act", "last twenty minutes"])
        return f"a {_adj(rng, not positive)} {part}, but a {_adj(rng, positive)} {ending}."
    noun = rng.choice(_ASPECTS)
    return f"despite the {_adj(rng, not positive)} {noun}, {b}."


def _intensity(rng: random.Random, positive: bool) -> str:
    """Two opposite aspects; the strongly-intensified one decides, in either order."""
    strong = rng.choice(_STRONG)
    weak = rng.choice(_WEAK)
    if rng.random() < 0.3:  # short form: "mildly funny but utterly boring"
        s = f"{strong} {_adj(rng, positive)}"
        w = f"{weak} {_adj(rng, not positive)}"
        film = rng.choice(["it", f"this {rng.choice(_FILMS)}"])
        if rng.random() < 0.5:
            return f"{film} {rng.choice(_COPULA)} {w} but {s}."
        return f"{film} {rng.choice(_COPULA)} {s}, if {w}."
    s = _clause(rng, positive, strong)
    w = _clause(rng, not positive, weak)
    if rng.random() < 0.5:
        conn = rng.choice([", yet", ", but", " and", ", while", "; meanwhile"])
        return f"{w}{conn} {s}."
    conn = rng.choice([" and", ", while", ", though", "; on the other hand,", ", even if"])
    return f"{s}{conn} {w}."


def _plain(rng: random.Random, positive: bool) -> list[str]:
    sentences = []
    for _ in range(rng.choice([1, 1, 2, 2, 3])):
        inten = rng.choice(["", "", "", rng.choice(_STRONG), rng.choice(_WEAK)])
        if rng.random() < 0.5:
            sentences.append(f"{_clause(rng, positive, inten)}.")
        else:
            sentences.append(f"{_clause(rng, positive, inten)} and {_clause(rng, positive)}.")
    if rng.random() < 0.25:
        film = rng.choice(_FILMS)
        noun = rng.choice(_POS_NOUN if positive else _NEG_NOUN)
        sentences.append(f"this {film} is a {noun}.")
    return sentences


def _fill(text: str, rng: random.Random) -> str:
    return text.format(
        film=rng.choice(_FILMS), city=rng.choice(_CITIES), year=rng.randrange(1978, 2025)
    )


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _review(rng: random.Random, positive: bool, kind: str) -> str:
    if kind == "plain":
        core = _plain(rng, positive)
    elif kind == "negation":
        core = [f"{_negated_clause(rng, positive)}."]
        r = rng.random()
        if r < 0.35:  # a second negated clause with the same polarity
            core.append(f"{_negated_clause(rng, positive)}.")
        elif r < 0.55:  # or a plain one, so the negated word is outnumbered but not absent
            core.append(f"{_clause(rng, positive)}.")
    elif kind == "contrast":
        core = [_contrast(rng, positive)]
    elif kind == "intensity":
        core = [_intensity(rng, positive)]
    else:  # pragma: no cover - internal
        raise ValueError(kind)

    fillers = [_fill(f, rng) for f in rng.sample(_FILLERS, rng.choice([0, 0, 1, 1, 2, 3]))]
    parts: list[str] = []
    if rng.random() < 0.3:
        parts.append(_fill(rng.choice(_OPENERS), rng))
    n_before = rng.randint(0, len(fillers))
    parts.extend(fillers[:n_before])
    prefix = rng.choice(_PREFIXES) if rng.random() < 0.3 else ""
    parts.append(_cap(prefix + core[0]) if prefix else _cap(core[0]))
    parts.extend(_cap(c) for c in core[1:])
    parts.extend(fillers[n_before:])
    if len(" ".join(parts).split()) < 8:  # keep reviews at least ~8 words long
        parts.append(_fill(rng.choice([f for f in _FILLERS if f not in fillers]), rng))
    r = rng.random()
    if kind == "plain" and r < 0.3:
        parts.append(rng.choice(_POS_CLOSERS if positive else _NEG_CLOSERS))
    elif r < 0.5:
        parts.append(rng.choice(_NEUTRAL_CLOSERS))
    return " ".join(parts)


def generate_review_records(
    n: int, seed: int, label_noise: float = 0.0, *, stream: str = "train"
) -> list[ReviewRecord]:
    """Generate ``n`` movie reviews deterministically from ``(seed, stream)``.

    Classes are exactly balanced (``n // 2`` negatives, the rest positive, in shuffled order).
    Kinds: ~40 % ``plain`` (sentiment words agree with the label), ~20 % ``negation`` ("never
    boring", "hardly a masterpiece", "I can't say I enjoyed it"), ~20 % ``contrast`` (the clause
    after "but"/"however" or the main clause of "although" decides) and ~20 % ``intensity`` (two
    opposite aspects, the strongly intensified one decides, in either order). Positive and negative
    words therefore occur often in both classes.

    ``label_noise`` flips exactly ``round(n * label_noise)`` labels (chosen by a separate seeded
    stream, so the texts do not depend on it). :func:`load_raw` applies it to the train split
    only; the validation split is generated clean from a different ``stream``. The bounds of
    ``n`` (``data.train_size`` / ``data.eval_size``) and ``label_noise`` are the config's.
    Uses only ``random.Random`` seeded with a string (stable across processes and machines).
    """
    base = f"sweep-synthetic/v1/{int(seed)}/{stream}"
    rng = random.Random(base)
    labels = [0] * (n // 2) + [1] * (n - n // 2)
    rng.shuffle(labels)
    kinds = rng.choices(KINDS, weights=_KIND_WEIGHTS, k=n)
    texts = [_review(rng, bool(y), k) for y, k in zip(labels, kinds, strict=True)]
    noisy = list(labels)
    n_flip = round(n * float(label_noise))
    for i in random.Random(base + "/noise").sample(range(n), n_flip):
        noisy[i] = 1 - noisy[i]
    return [
        ReviewRecord(t, y, k, c) for t, y, k, c in zip(texts, noisy, kinds, labels, strict=True)
    ]


def generate_reviews(
    n: int, seed: int, label_noise: float = 0.0, *, stream: str = "train"
) -> tuple[list[str], list[int]]:
    """Texts and labels (0 = negative, 1 = positive); see :func:`generate_review_records`."""
    records = generate_review_records(n, seed, label_noise, stream=stream)
    return [r.text for r in records], [r.label for r in records]
