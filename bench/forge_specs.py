"""The forge's spec suite: needs as a person would state them, each with HIDDEN cases.

The model sees only `spec`. The cases (positional arguments -> expected result) are run by the
benchmark in the sandbox against the tool the forge registered; a spec counts as solved only when
the forge registered a tool within its attempts and that tool returns every expected result.
Arguments are positional because the model picks the parameter names; a spec that takes more than
one argument says their order. Keep the example in the forge prompt (days between two dates) out
of this list.
"""

from __future__ import annotations

from typing import Any

# (spec, [(args, expected), ...])
SPECS: list[tuple[str, list[tuple[list, Any]]]] = [
    ("a function that returns the greatest common divisor of two positive integers",
     [([12, 18], 6), ([17, 5], 1), ([100, 75], 25), ([7, 7], 7), ([1, 99], 1), ([270, 192], 6)]),
    ("a function that takes a string and returns True if it reads the same forwards and backwards when case "
     "and all non-alphanumeric characters are ignored, else False",
     [(["A man, a plan, a canal: Panama"], True), (["hello"], False), ([""], True), (["No 'x' in Nixon"], True),
      (["ab"], False), (["Was it a car or a cat I saw?"], True)]),
    ("a function that returns the factorial of a non-negative integer n",
     [([0], 1), ([1], 1), ([5], 120), ([10], 3628800)]),
    ("a function that returns the n-th Fibonacci number, where fib(0) = 0 and fib(1) = 1",
     [([0], 0), ([1], 1), ([2], 1), ([10], 55), ([30], 832040)]),
    ("a function that counts the words in a text, where words are separated by any whitespace",
     [(["hello world"], 2), ([""], 0), (["  spaced   out  text "], 3), (["one\ttwo\nthree"], 3)]),
    ("a function that takes a sentence and returns it with the order of its words reversed, the words joined by "
     "single spaces",
     [(["hello world foo"], "foo world hello"), (["single"], "single"), (["  a  b "], "b a")]),
    ("a function that converts a temperature from degrees Celsius to degrees Fahrenheit",
     [([0], 32), ([100], 212), ([-40], -40), ([37], 98.6)]),
    ("a function that returns True if an integer is a prime number, else False",
     [([2], True), ([1], False), ([0], False), ([17], True), ([21], False), ([97], True), ([-7], False)]),
    ("a function that returns the sum of the decimal digits of a non-negative integer",
     [([0], 0), ([12345], 15), ([9], 9), ([1000], 1)]),
    ("a function that flattens a list of lists by one level into a single list",
     [([[[1, 2], [3], []]], [1, 2, 3]), ([[]], []), ([[["a"], ["b", "c"]]], ["a", "b", "c"])]),
    ("a function that removes duplicates from a list while keeping the first occurrence of each item in its "
     "original order",
     [([[3, 1, 3, 2, 1]], [3, 1, 2]), ([[]], []), ([["b", "a", "b"]], ["b", "a"])]),
    ("a function that returns the second largest distinct value in a list of numbers, or None if there are fewer "
     "than two distinct values",
     [([[4, 1, 4, 3]], 3), ([[5]], None), ([[2, 2]], None), ([[-1, -5, -3]], -3), ([[10, 20]], 10)]),
    ("a function that returns a dictionary mapping each character of a string to the number of times it occurs",
     [(["abca"], {"a": 2, "b": 1, "c": 1}), ([""], {}), (["zz z"], {"z": 3, " ": 1})]),
    ("a function that capitalizes the first letter of every word in a sentence of lowercase words separated by "
     "single spaces",
     [(["hello big world"], "Hello Big World"), (["a"], "A"), (["python is fun"], "Python Is Fun")]),
    ("a function that returns the binary representation of a non-negative integer as a string of 0s and 1s "
     "without any prefix",
     [([5], "101"), ([0], "0"), ([255], "11111111"), ([1024], "10000000000")]),
    ("a function that returns the median of a non-empty list of numbers (the mean of the two middle values when "
     "the count is even)",
     [([[3, 1, 2]], 2), ([[4, 1, 3, 2]], 2.5), ([[7]], 7), ([[1, 1, 5, 9]], 3)]),
    ("a function that run-length encodes a string: each run of a repeated character becomes the character "
     "followed by the length of the run, e.g. 'aab' becomes 'a2b1'",
     [(["aaabccdddd"], "a3b1c2d4"), ([""], ""), (["x"], "x1"), (["abab"], "a1b1a1b1")]),
    ("a function that returns True if two strings are anagrams of each other, ignoring case and spaces, else False",
     [(["Listen", "Silent"], True), (["Dormitory", "dirty room"], True), (["abc", "abd"], False),
      (["aab", "abb"], False)]),
    ("a function that converts an integer from 1 to 3999 into a Roman numeral string",
     [([4], "IV"), ([9], "IX"), ([14], "XIV"), ([40], "XL"), ([1994], "MCMXCIV"), ([3999], "MMMCMXCIX")]),
    ("a function that returns True if a year is a leap year in the Gregorian calendar, else False",
     [([2000], True), ([1900], False), ([2024], True), ([2023], False), ([2100], False)]),
    ("a function that splits a list into consecutive chunks of size n (the last chunk may be shorter), given the "
     "list and then n",
     [([[1, 2, 3, 4, 5], 2], [[1, 2], [3, 4], [5]]), ([[], 3], []), ([[1, 2, 3], 3], [[1, 2, 3]])]),
    ("a function that applies a Caesar cipher to a text, given the text and then an integer shift: letters move "
     "forward in the alphabet by the shift, wrapping around and keeping their case; other characters stay as "
     "they are",
     [(["Hello, World!", 3], "Khoor, Zruog!"), (["xyz", 2], "zab"), (["ABC", 26], "ABC"), (["abc", -1], "zab")]),
]
