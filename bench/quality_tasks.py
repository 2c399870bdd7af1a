"""The quality benchmark's tasks: each has a checkable answer (a number, a word, a list of N items,
or a function whose hidden cases are run in the sandbox). Data plus the graders; nothing model-made
is executed here (code answers go to the sandbox through bench_quality.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class QualityTask:
    """One task; `kind` picks the grader: number, word, items, code."""

    id: str
    kind: str
    text: str
    expected: Any = None
    tolerance: float = 1e-6
    function: str = ""  # code tasks: the function the answer must define
    cases: tuple = field(default_factory=tuple)  # code tasks: ((args...), expected) hidden from the model


def last_number(answer: str) -> float | None:
    """The last number written in the answer (the usual GSM8K grading); commas as thousands separators."""
    found = _NUMBER.findall(answer.replace("\u2212", "-"))
    if not found:
        return None
    try:
        return float(found[-1].replace(",", "").rstrip("."))
    except ValueError:
        return None


def list_items(answer: str) -> list[str]:
    """Lines that are list items: '1.' / '1)' numbered or '-', '*', '•' bulleted."""
    return [line for line in answer.splitlines()
            if re.match(r"\s*(?:\d+[.)]|[-*\u2022])\s+\S", line)]


def code_of(answer: str) -> str:
    """The Python the answer gives: its fenced blocks, else the text from the first 'def ' on."""
    blocks = re.findall(r"```(?:python|py)?\s*\n(.*?)```", answer, flags=re.S)
    if blocks:
        return "\n\n".join(blocks)
    start = answer.find("def ")
    return answer[start:] if start >= 0 else ""


def grade_text(task: QualityTask, answer: str) -> tuple[bool, str]:
    """(correct, why) for the non-code kinds."""
    if task.kind == "number":
        value = last_number(answer)
        ok = value is not None and abs(value - float(task.expected)) <= task.tolerance
        return ok, f"last number {value}, expected {task.expected}"
    if task.kind == "word":
        words = task.expected if isinstance(task.expected, (list, tuple)) else [task.expected]
        ok = any(re.search(rf"(?<![A-Za-z]){re.escape(w)}(?![A-Za-z])", answer, flags=re.I) for w in words)
        return ok, f"expected one of {words}"
    if task.kind == "items":
        items = list_items(answer)
        return len(items) == task.expected, f"{len(items)} list item(s), expected {task.expected}"
    raise ValueError(f"task {task.id}: grade code answers in the sandbox")


def _n(id_: str, text: str, expected: float, tolerance: float = 1e-6) -> QualityTask:
    return QualityTask(id_, "number", text + " End with the final number.", expected, tolerance)


def _code(id_: str, text: str, function: str, cases: tuple) -> QualityTask:
    return QualityTask(id_, "code", text + " Give the code in a ```python block.", function=function, cases=cases)


TASKS: tuple[QualityTask, ...] = (
    # arithmetic and unit word problems
    _n("pencil", "A pencil costs 3 cents more than an eraser. Together they cost 25 cents. How many cents does the eraser cost?", 11),
    _n("ages", "Anna is twice as old as Ben. In 5 years the sum of their ages will be 40. How old is Anna now?", 20),
    _n("train", "A train travels 180 km in 2.5 hours. What is its average speed in km per hour?", 72),
    _n("flour", "A recipe needs 250 g of flour for 10 cookies. How many grams of flour are needed for 36 cookies?", 900),
    _n("apples", "Tom has 3 boxes with 12 apples each. He gives away 15 apples. How many apples does he have left?", 21),
    _n("discount", "A shirt costs 40 dollars and is discounted by 25 percent. What is the new price in dollars?", 30),
    _n("minutes", "How many minutes are there in 3.5 hours?", 210),
    _n("path", "A rectangular garden is 12 m long and 7 m wide. A path 1 m wide runs around the outside of it. What is the area of the path in square metres?", 42),
    _n("widgets", "If 5 machines make 5 widgets in 5 minutes, how many minutes do 100 machines need to make 100 widgets?", 5),
    _n("batball", "A bat and a ball cost 1.10 dollars in total. The bat costs 1.00 dollar more than the ball. How many cents does the ball cost?", 5),
    _n("pages", "Sara reads 15 pages a day. Her book has 320 pages. After 12 days, how many pages does she still have to read?", 140),
    _n("fuel", "A car uses 6 litres of fuel per 100 km. How many litres does it need for 350 km?", 21),
    _n("miles", "Convert 5 miles to kilometres using 1 mile = 1.609 km, rounded to one decimal place.", 8.0, 0.051),
    _n("tank", "A tank holds 300 litres and already has 60 litres in it. Water flows in at 12 litres per minute. How many minutes until it is full?", 20),
    _n("pens", "A shop sells pens in packs of 4 for 3 dollars. How many dollars do 28 pens cost?", 21),
    _n("average", "The average of four numbers is 15. Three of them are 10, 12 and 20. What is the fourth number?", 18),
    _n("stickers", "Lisa has 48 stickers. She gives one third of them to her brother, then one quarter of the rest to her friend. How many stickers does she keep?", 24),
    _n("product", "What is 17 times 23?", 391),
    _n("doubled", "A number is doubled and then increased by 7, which gives 35. What is the number?", 14),
    _n("girls", "A class has 30 students and 40 percent of them are boys. How many girls are in the class?", 18),
    _n("cyclist", "A cyclist rides at 15 km per hour for 40 minutes. How many kilometres does she ride?", 10),
    _n("change", "Mia buys 3 notebooks at 2.40 dollars each and pays with a 10 dollar bill. How much change does she get, in dollars?", 2.8, 0.001),
    QualityTask("clock", "word", "A clock shows 9:45. What time does it show 2 hours and 30 minutes later? Write the time as H:MM.", "12:15"),
    # short facts
    QualityTask("sodium", "word", "What is the chemical symbol of sodium?", "Na"),
    QualityTask("planet", "word", "Which planet is closest to the Sun?", "Mercury"),
    _n("hexagon", "How many sides does a hexagon have?", 6),
    _n("boiling", "What is the boiling point of water at sea level in degrees Fahrenheit?", 212),
    QualityTask("tuple", "word", "In Python, is a tuple mutable or immutable?", "immutable"),
    QualityTask("capital", "word", "What is the capital city of Australia?", "Canberra"),
    _n("byte", "How many bits are in one byte?", 8),
    QualityTask("photosynthesis", "word", "Which gas do plants take in from the air for photosynthesis?", ["carbon dioxide", "CO2"]),
    # format constraints
    QualityTask("interview", "items", "A friend of mine is nervous about a job interview tomorrow. What three things should she do tonight? Give exactly three, as a numbered list.", 3),
    QualityTask("sleep", "items", "Give exactly two tips for sleeping better, as a numbered list.", 2),
    QualityTask("goldfish", "items", "Suggest exactly five names for a pet goldfish, as a numbered list.", 5),
    QualityTask("languages", "items", "List exactly four programming languages created before 1980, as a bulleted list with '-'.", 4),
    QualityTask("study", "items", "I have an exam in a week. Give me exactly three study habits, as a numbered list.", 3),
    # small code questions, checked in the sandbox
    _code("is_prime", "Write a Python function is_prime(n) that returns True if the integer n is a prime number and False otherwise.",
          "is_prime", (((2,), True), ((1,), False), ((0,), False), ((17,), True), ((21,), False), ((97,), True), ((100,), False))),
    _code("reverse_words", "Write a Python function reverse_words(s) that returns the words of the string s in reverse order, joined by single spaces.",
          "reverse_words", ((("hello big world",), "world big hello"), (("one",), "one"), (("a b",), "b a"))),
    _code("fizzbuzz", "Write a Python function fizzbuzz(n) that returns 'Fizz' for multiples of 3, 'Buzz' for multiples of 5, 'FizzBuzz' for multiples of both, and otherwise the number as a string.",
          "fizzbuzz", (((3,), "Fizz"), ((10,), "Buzz"), ((30,), "FizzBuzz"), ((7,), "7"))),
    _code("second_largest", "Write a Python function second_largest(nums) that returns the second largest distinct value in a list of numbers.",
          "second_largest", ((([3, 1, 4, 4, 2],), 3), (([10, 20],), 10), (([5, 5, 7, 7, 6],), 6))),
    _code("is_palindrome", "Write a Python function is_palindrome(s) that returns True if the string s reads the same forwards and backwards, ignoring case and spaces.",
          "is_palindrome", ((("Never odd or even",), True), (("abc",), False), (("A",), True), (("ab ba",), True))),
    _code("gcd", "Write a Python function gcd(a, b) that returns the greatest common divisor of two positive integers.",
          "gcd", (((12, 18), 6), ((7, 5), 1), ((100, 75), 25), ((9, 9), 9))),
    _code("flatten", "Write a Python function flatten(lists) that takes a list of lists and returns one list with all their items in order.",
          "flatten", ((([[1, 2], [3], []],), [1, 2, 3]), (([],), []), ((([["a"], ["b", "c"]]),), ["a", "b", "c"]))),
    _code("c_to_f", "Write a Python function celsius_to_fahrenheit(c) that converts a temperature from degrees Celsius to degrees Fahrenheit.",
          "celsius_to_fahrenheit", (((0,), 32), ((100,), 212), ((-40,), -40), ((37,), 98.6))),
)
