"""Write lit_gpt/cli/demo_data/chat_sample (shipped with the package): a small chat dataset written for this project
(no outside text), for the
fine-tuning demo and the tests. Deterministic: the same files on every run.

    python scripts/build_chat_sample.py [--out_dir lit_gpt/cli/demo_data/chat_sample]

- chat.jsonl: 300 conversations in the chat-messages format about Python, its standard library and
  arithmetic; some with a system message, some with several turns;
- guanaco.jsonl: 30 conversations as openassistant-guanaco writes them (`### Human:` / `### Assistant:`);
- alpaca.json: 30 instruction records (instruction, input, output).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from jsonargparse import CLI

# (question, answer) about the Python language.
PYTHON_FACTS = [
    (
        "How do I reverse a list in Python?",
        "Call `items.reverse()` to reverse the list in place, or use `items[::-1]` to get a reversed copy.",
    ),
    (
        "How do I read a text file line by line?",
        "Open it in a `with` block and loop over the file object: `with open(path) as f: for line in f: ...`. "
        "Each line keeps its newline; `line.rstrip('\\n')` removes it.",
    ),
    (
        "What is the difference between a list and a tuple?",
        "A list is mutable: you can append, remove and change items. A tuple is immutable once created, "
        "so it can be used as a dictionary key when its items are hashable.",
    ),
    (
        "How do I check if a key is in a dictionary?",
        "Use the `in` operator: `if key in d:`. To read a value with a fallback, use `d.get(key, default)`.",
    ),
    (
        "What does `enumerate` do?",
        "`enumerate(items)` yields pairs of an index and an item, so `for i, x in enumerate(items):` "
        "gives you the position together with the value. Pass `start=1` to count from one.",
    ),
    (
        "How do I write a list comprehension?",
        "Put an expression and a `for` clause in brackets: `[x * x for x in range(5)]` gives "
        "`[0, 1, 4, 9, 16]`. Add a condition with `if`: `[x for x in items if x > 0]`.",
    ),
    (
        "What is a generator?",
        "A generator is a function that uses `yield`. Calling it returns an iterator that produces values "
        "one at a time, only when asked, so it can describe long or endless sequences without storing them.",
    ),
    (
        "How do I format a number with two decimals?",
        'Use an f-string with a format spec: `f"{value:.2f}"` turns 3.14159 into `3.14`.',
    ),
    (
        'What does `if __name__ == "__main__":` mean?',
        "The block runs only when the file is executed as a script, not when it is imported as a module. "
        "It is the usual place for a program's entry point.",
    ),
    (
        "How do I sort a list of dictionaries by a key?",
        'Pass a key function to `sorted`: `sorted(rows, key=lambda row: row["age"])`. '
        "Add `reverse=True` for descending order.",
    ),
    (
        "What is the difference between `==` and `is`?",
        "`==` compares values, `is` checks whether two names refer to the very same object. "
        "Use `is` for `None`: `if x is None:`.",
    ),
    (
        "How do I remove duplicates from a list but keep the order?",
        "Use a dictionary, whose keys keep insertion order: `list(dict.fromkeys(items))`.",
    ),
    (
        "How do I handle an exception?",
        "Wrap the code in `try` and catch the specific error: `try: n = int(text) except ValueError: n = 0`. "
        "Catch only the exceptions you expect.",
    ),
    (
        "What are *args and **kwargs?",
        "In a function definition, `*args` collects extra positional arguments into a tuple and "
        "`**kwargs` collects extra keyword arguments into a dictionary.",
    ),
    (
        "How do I join a list of strings with commas?",
        'Call `join` on the separator: `", ".join(words)`. All items must be strings; convert numbers '
        "first with `map(str, numbers)`.",
    ),
    (
        "How do I split a string into words?",
        "`text.split()` splits on any run of whitespace and drops empty strings. "
        '`text.split(",")` splits on commas instead.',
    ),
    (
        "What is a virtual environment?",
        "A folder with its own Python interpreter and packages, so each project keeps its own dependencies. "
        "Create one with `python -m venv .venv` and activate it before installing packages.",
    ),
    (
        "How do I copy a list?",
        "`items.copy()` or `list(items)` make a shallow copy. For nested lists, `copy.deepcopy(items)` "
        "copies the inner lists too.",
    ),
    (
        "What does the `with` statement do?",
        "It runs a block inside a context manager, which sets something up and always cleans it up, "
        "even after an error. Files are closed at the end of `with open(...) as f:`.",
    ),
    ("How do I get the length of a string?", "Use `len(text)`. It counts characters (code points), not bytes."),
    (
        "What is a lambda?",
        "A small anonymous function written in one expression: `lambda x: x + 1`. It is handy as a key "
        "function for `sorted` or `max`.",
    ),
    (
        "How do I merge two dictionaries?",
        "`a | b` returns a new dictionary with the items of both; values from `b` win on equal keys. "
        "`a.update(b)` does the same in place.",
    ),
    (
        "How do I loop over two lists at the same time?",
        "Use `zip`: `for name, score in zip(names, scores):`. It stops at the shorter list; "
        "`zip(..., strict=True)` raises an error when the lengths differ.",
    ),
    (
        "What is a set?",
        "An unordered collection of unique, hashable items. Membership tests with `in` are fast, and sets "
        "support union `|`, intersection `&` and difference `-`.",
    ),
    (
        "How do I convert a string to an integer?",
        "Call `int(text)`. It raises `ValueError` when the text is not a whole number, so catch that if the "
        "input comes from a user.",
    ),
    (
        "What are type hints?",
        "Annotations such as `def area(width: float, height: float) -> float:` that document the expected "
        "types. Python does not enforce them at run time; tools like mypy check them.",
    ),
    (
        "How do I write a class with a constructor?",
        "Define `__init__`: `class Point: def __init__(self, x, y): self.x = x; self.y = y`. "
        "`Point(1, 2)` then creates an instance.",
    ),
    (
        "What is a dataclass?",
        "A class decorated with `@dataclass` from the `dataclasses` module. Python writes `__init__`, "
        "`__repr__` and `__eq__` for you from the annotated fields.",
    ),
    (
        "How do I run a Python script?",
        "From a terminal, run `python script.py`. Arguments after the file name are available in `sys.argv`.",
    ),
    ("How do I install a package?", "Use pip inside your virtual environment: `python -m pip install requests`."),
]

# (module, function, what it does, example)
STDLIB = [
    ("math", "sqrt", "returns the square root of a number", "math.sqrt(16) returns 4.0"),
    ("math", "floor", "rounds a number down to the nearest integer", "math.floor(2.7) returns 2"),
    ("math", "ceil", "rounds a number up to the nearest integer", "math.ceil(2.1) returns 3"),
    ("math", "gcd", "returns the greatest common divisor of integers", "math.gcd(12, 18) returns 6"),
    (
        "math",
        "isclose",
        "tells whether two floats are close to each other",
        "math.isclose(0.1 + 0.2, 0.3) returns True",
    ),
    ("os", "listdir", "lists the names in a directory", "os.listdir('.') returns the names in the current directory"),
    ("os", "getcwd", "returns the current working directory", "os.getcwd() might return '/home/ada/project'"),
    (
        "os.path",
        "join",
        "joins path parts with the right separator",
        "os.path.join('data', 'file.txt') returns 'data/file.txt' on Linux",
    ),
    (
        "os.path",
        "exists",
        "tells whether a path exists",
        "os.path.exists('setup.py') returns True if the file is there",
    ),
    ("pathlib", "Path", "represents a file system path as an object", "Path('data') / 'file.txt' builds a path"),
    ("json", "dumps", "turns Python objects into a JSON string", "json.dumps({'a': 1}) returns '{\"a\": 1}'"),
    ("json", "loads", "parses a JSON string into Python objects", "json.loads('[1, 2]') returns [1, 2]"),
    (
        "random",
        "choice",
        "picks a random item from a sequence",
        "random.choice(['red', 'green']) returns one of the two",
    ),
    ("random", "shuffle", "shuffles a list in place", "random.shuffle(cards) reorders the list cards"),
    (
        "random",
        "randint",
        "returns a random integer between two bounds, both included",
        "random.randint(1, 6) acts like a die",
    ),
    ("collections", "Counter", "counts hashable items", "Counter('banana') counts a: 3, n: 2, b: 1"),
    (
        "collections",
        "defaultdict",
        "is a dictionary that creates missing values with a factory",
        "defaultdict(list) starts every new key with an empty list",
    ),
    (
        "collections",
        "deque",
        "is a double-ended queue with fast appends and pops at both ends",
        "deque([1, 2]).appendleft(0) puts 0 in front",
    ),
    (
        "itertools",
        "chain",
        "iterates over several iterables one after the other",
        "list(chain([1], [2, 3])) returns [1, 2, 3]",
    ),
    (
        "itertools",
        "combinations",
        "yields the combinations of a given length",
        "list(combinations('abc', 2)) returns three pairs",
    ),
    ("itertools", "count", "counts up forever from a start value", "count(10) yields 10, 11, 12 and so on"),
    ("functools", "lru_cache", "caches the results of a function", "@lru_cache on a recursive fibonacci makes it fast"),
    ("functools", "partial", "fixes some arguments of a function", "partial(int, base=2)('101') returns 5"),
    ("datetime", "date.today", "returns today's date", "date.today().year gives the current year"),
    ("datetime", "timedelta", "represents a duration", "timedelta(days=7) is one week"),
    ("time", "sleep", "pauses the program for some seconds", "time.sleep(0.5) waits half a second"),
    (
        "time",
        "perf_counter",
        "returns a clock for measuring short durations",
        "subtract two perf_counter() readings to time code",
    ),
    ("re", "search", "finds the first match of a regular expression", "re.search(r'\\d+', 'abc 42') matches '42'"),
    ("re", "sub", "replaces the matches of a regular expression", "re.sub(r'\\s+', ' ', text) collapses whitespace"),
    ("sys", "exit", "ends the program with an exit status", "sys.exit(1) signals an error to the shell"),
    ("shutil", "copyfile", "copies the contents of a file", "shutil.copyfile('a.txt', 'b.txt') copies a to b"),
    ("statistics", "mean", "returns the arithmetic mean of numbers", "statistics.mean([1, 2, 3, 4]) returns 2.5"),
    ("statistics", "median", "returns the middle value of numbers", "statistics.median([3, 1, 2]) returns 2"),
    ("string", "ascii_lowercase", "is the string of the lowercase letters a to z", "len(string.ascii_lowercase) is 26"),
    ("csv", "reader", "reads rows from a CSV file", "for row in csv.reader(f) gives each row as a list of strings"),
    (
        "heapq",
        "heappush",
        "pushes an item onto a heap kept in a list",
        "heappush(heap, 5) keeps the smallest item first",
    ),
    (
        "bisect",
        "bisect_left",
        "finds where to insert an item into a sorted list",
        "bisect_left([1, 3, 5], 4) returns 2",
    ),
    (
        "textwrap",
        "wrap",
        "wraps a long text into lines of a given width",
        "textwrap.wrap(text, 40) returns a list of lines",
    ),
    (
        "hashlib",
        "sha256",
        "computes a SHA-256 hash",
        "hashlib.sha256(b'hi').hexdigest() returns a 64-character hex string",
    ),
    ("uuid", "uuid4", "creates a random unique identifier", "str(uuid.uuid4()) gives a new id each time"),
]

SYSTEM_PROMPTS = [
    "You are a helpful assistant who answers questions about Python.",
    "You are a concise assistant. Answer in as few words as you can.",
    "You are a patient tutor. Explain things simply.",
    "You are a calculator. Give the result and nothing else.",
]

OPS = [("+", "plus", lambda a, b: a + b), ("-", "minus", lambda a, b: a - b), ("*", "times", lambda a, b: a * b)]


def message(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def arithmetic(rng: random.Random) -> list[dict[str, str]]:
    symbol, word, fn = rng.choice(OPS)
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    question = rng.choice([f"What is {a} {symbol} {b}?", f"What is {a} {word} {b}?", f"Compute {a} {symbol} {b}."])
    result = fn(a, b)
    messages = [message("user", question), message("assistant", f"{a} {symbol} {b} = {result}.")]
    if rng.random() < 0.4:  # a follow-up turn on the previous result
        c = rng.randint(2, 9)
        follow_symbol, follow_word, follow_fn = rng.choice(OPS)
        messages += [
            message("user", f"And {follow_word} {c}?"),
            message("assistant", f"{result} {follow_symbol} {c} = {follow_fn(result, c)}."),
        ]
    return messages


def stdlib(rng: random.Random) -> list[dict[str, str]]:
    module, name, does, example = rng.choice(STDLIB)
    qualified = f"{module}.{name}"
    kind = rng.randrange(3)
    if kind == 0:
        messages = [message("user", f"What does {qualified} do?"), message("assistant", f"`{qualified}` {does}.")]
    elif kind == 1:
        messages = [
            message("user", f"Which module has {name.split('.')[-1]}?"),
            message("assistant", f"`{name}` is in the `{module}` module: it {does}."),
        ]
    else:
        messages = [
            message("user", f"How do I use {qualified}?"),
            message("assistant", f"Import `{module}` first. `{qualified}` {does}: {example}."),
        ]
    if rng.random() < 0.3:
        messages += [message("user", "Can you give an example?"), message("assistant", f"Sure: {example}.")]
    return messages


def python_fact(rng: random.Random) -> list[dict[str, str]]:
    question, answer = rng.choice(PYTHON_FACTS)
    return [message("user", question), message("assistant", answer)]


def with_system(rng: random.Random, messages: list[dict[str, str]], kind: str) -> list[dict[str, str]]:
    if rng.random() >= 0.25:
        return messages
    prompt = SYSTEM_PROMPTS[3] if kind == "arithmetic" else rng.choice(SYSTEM_PROMPTS[:3])
    if prompt == SYSTEM_PROMPTS[3]:  # the calculator answers with the number alone
        messages = [
            message(m["role"], m["content"].rsplit("= ", 1)[-1].rstrip(".")) if m["role"] == "assistant" else m
            for m in messages
        ]
    return [message("system", prompt)] + messages


def chat_conversations(n: int, rng: random.Random) -> list[list[dict[str, str]]]:
    makers = [("arithmetic", arithmetic), ("stdlib", stdlib), ("python", python_fact)]
    conversations = []
    for i in range(n):
        kind, make = makers[i % len(makers)]
        conversations.append(with_system(rng, make(rng), kind))
    return conversations


def guanaco_text(messages: list[dict[str, str]]) -> str:
    speaker = {"user": "### Human: ", "assistant": "### Assistant: "}
    return "".join(speaker[m["role"]] + m["content"] for m in messages if m["role"] != "system")


def build_chat_sample(
    out_dir: Path = Path(__file__).resolve().parents[1] / "lit_gpt" / "cli" / "demo_data" / "chat_sample",
) -> None:
    """Write chat.jsonl, guanaco.jsonl and alpaca.json into `out_dir`."""
    rng = random.Random(2024)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "chat.jsonl", "w") as f:
        for messages in chat_conversations(300, rng):
            f.write(json.dumps({"messages": messages}) + "\n")
    with open(out_dir / "guanaco.jsonl", "w") as f:
        for i in range(30):
            f.write(json.dumps({"text": guanaco_text((arithmetic, stdlib, python_fact)[i % 3](rng))}) + "\n")
    records = []
    for i in range(30):
        if i % 2:
            module, name, does, example = rng.choice(STDLIB)
            records.append(
                {
                    "instruction": "Explain what this standard library function does.",
                    "input": f"{module}.{name}",
                    "output": f"`{module}.{name}` {does}. For example, {example}.",
                }
            )
        else:
            a, b = rng.randint(10, 999), rng.randint(10, 999)
            records.append({"instruction": f"Add {a} and {b}.", "input": "", "output": f"{a} + {b} = {a + b}."})
    (out_dir / "alpaca.json").write_text(json.dumps(records, indent=2) + "\n")
    print(f"wrote {out_dir}: 300 chat, 30 guanaco and 30 alpaca conversations")


if __name__ == "__main__":
    CLI(build_chat_sample, as_positional=False)
