"""A local multiple-choice lm-eval task (a YAML file and a JSONL file), for tests that must not reach a hub."""

import json
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def task_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tasks")
    with open(folder / "questions.jsonl", "w", encoding="utf-8") as f:
        for question, choices, answer in QUESTIONS:
            f.write(json.dumps({"question": question, "choices": choices, "answer": answer}, ensure_ascii=False) + "\n")
    (folder / f"{TASK}.yaml").write_text(f"""\
task: {TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {folder / 'questions.jsonl'}
  cache_dir: {folder / 'hf_datasets_cache'}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}?\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
""")
    return folder
