"""The questions of a local multiple-choice lm-eval task (written out by `task_dir` in conftest.py), for tests that
must not reach a hub."""

TASK = "tiny_choice"
QUESTIONS = [
    ("which word is code", ["code", "text", "café"], 0),
    ("what does the model learn", ["tokens", "naïve tokens", "nothing at all", "lo"], 0),
    ("the model learns from", ["text and code", "café", "mi"], 0),
    ("pick a short word", ["ab", "kalo", "chabne"], 1),
    ("which is written with an accent", ["café", "cafe", "kafe", "naive"], 0),
    ("name a syllable", ["ka", "lo", "mi"], 2),
    ("what follows the", ["model", "from", "and"], 0),
    ("which word is not text", ["text", "tokens", "naïve"], 2),
    ("finish: the model learns tokens from", ["text", "the", "ü"], 0),
    ("a word with ü", ["abü", "elü", "kaüel", "ab"], 1),
    ("learns or code", ["learns", "code"], 1),
    ("the last question", ["yes", "no", "perhaps", "é"], 3),
]
