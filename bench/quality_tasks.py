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
    _n("discount", "A shirt costs 40 dollars and is discounted by 25 percent. What is the new price in dollars?", 30),
    _n("path", "A rectangular garden is 12 m long and 7 m wide. A path 1 m wide runs around the outside of it. What is the area of the path in square metres?", 42),
    _n("widgets", "If 5 machines make 5 widgets in 5 minutes, how many minutes do 100 machines need to make 100 widgets?", 5),
    _n("batball", "A bat and a ball cost 1.10 dollars in total. The bat costs 1.00 dollar more than the ball. How many cents does the ball cost?", 5),
    _n("miles", "Convert 5 miles to kilometres using 1 mile = 1.609 km, rounded to one decimal place.", 8.0, 0.051),
    _n("average", "The average of four numbers is 15. Three of them are 10, 12 and 20. What is the fourth number?", 18),
    _n("stickers", "Lisa has 48 stickers. She gives one third of them to her brother, then one quarter of the rest to her friend. How many stickers does she keep?", 24),
    _n("cyclist", "A cyclist rides at 15 km per hour for 40 minutes. How many kilometres does she ride?", 10),
    _n("change", "Mia buys 3 notebooks at 2.40 dollars each and pays with a 10 dollar bill. How much change does she get, in dollars?", 2.8, 0.001),
    # multi-step word problems (where one pass of a small model often slips)
    _n("bakery", "A bakery sells muffins for 2.50 dollars and cookies for 1.20 dollars. On Monday it sold 36 muffins and 55 cookies; on Tuesday it sold twice as many muffins and 10 fewer cookies than on Monday. How many dollars did it take in over the two days?", 390),
    _n("overtime", "Jake earns 18 dollars an hour for the first 40 hours of a week and one and a half times that rate for every hour over 40. Last week he worked 47 hours. How many dollars did he earn?", 909),
    _n("commute", "A school has 450 students. 60 percent of them walk to school, a third of the rest come by bus, and the others are driven by their parents. How many students are driven?", 120),
    _n("drain", "A pipe fills a tank in 6 hours and a drain empties the full tank in 10 hours. If both are open and the tank starts empty, how many hours does it take to fill?", 15, 0.01),
    _n("markup", "A shop raises the price of an 80 dollar jacket by 25 percent, then offers 20 percent off the new price. What is the final price in dollars?", 80),
    _n("pizza", "Three friends share a pizza bill of 54 dollars. Ana pays twice as much as Bo, and Cy pays 6 dollars more than Bo. How many dollars does Ana pay?", 24),
    _n("legs", "A farmer has only chickens and cows, 30 animals in all, with 74 legs between them. How many cows does he have?", 7),
    _n("tickets", "Tickets cost 12 dollars for adults and 7 dollars for children. A group of 15 people paid 145 dollars in all. How many children were in the group?", 7),
    _n("savings", "Lena saves 35 dollars every week and already has 120 dollars. After how many whole weeks will she first have at least 500 dollars?", 11),
    _n("rectangle", "A rectangle's length is 3 times its width and its perimeter is 64 cm. What is its area in square centimetres?", 192),
    _n("depreciation", "A car's value falls by 10 percent every year. It was bought for 20000 dollars. What is it worth after 3 years, in dollars?", 14580, 0.5),
    _n("marbles", "A bag holds red, blue and green marbles in the ratio 2:3:5. There are 12 more green marbles than red ones. How many marbles are in the bag?", 40),
    _n("sevens", "How many times is the digit 7 written when you write all the whole numbers from 1 to 100?", 20),
    _n("multiples", "What is the sum of all whole numbers from 1 to 200 that are divisible by 3 or by 5?", 9368),
    # counts and sums over a named range of many numbers (where BRICK computes with a program)
    _n("primes", "What is the sum of all prime numbers below 100?", 1060),
    _n("squares", "How many perfect squares are there among the whole numbers from 1 to 1000?", 31),
    _n("digitsum", "What is the sum of the digits of all the whole numbers from 1 to 50?", 330),
    _n("divisors", "How many whole numbers from 1 to 100 have exactly three divisors?", 4),
    _n("leapyears", "How many leap years are there from the year 1900 to the year 2100, both included?", 49),
    _n("threes", "How many of the whole numbers from 1 to 500 contain the digit 3 at least once?", 176),
    QualityTask("clock", "word", "A clock shows 9:45. What time does it show 2 hours and 30 minutes later? Write the time as H:MM.", "12:15"),
    # short facts
    QualityTask("planet", "word", "Which planet is closest to the Sun?", "Mercury"),
    _n("boiling", "What is the boiling point of water at sea level in degrees Fahrenheit?", 212),
    QualityTask("tuple", "word", "In Python, is a tuple mutable or immutable?", "immutable"),
    QualityTask("capital", "word", "What is the capital city of Australia?", "Canberra"),
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
