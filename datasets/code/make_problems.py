#!/usr/bin/env python3
"""Writes datasets/code/problems.jsonl: Cove's own code problems (see README.md).

Each problem has a reference solution and wrong solutions labelled with the verdict the
verifier must give them (the first failing case's verdict). Expected outputs are
computed by running the reference solution with native CPython here, so they cannot
drift from it. Run: python3 datasets/code/make_problems.py
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROBLEMS = []

WRONG_SYNTAX = "def oops(:\n    pass\n"
WRONG_CRASH = "raise ValueError('not implemented')\n"
WRONG_LOOP = "while True:\n    pass\n"


def run_stdio(code, stdin):
    # stdin from a file, as judges do (so os.fstat(0).st_size is the input's size)
    with tempfile.TemporaryFile("w+") as f:
        f.write(stdin)
        f.seek(0)
        done = subprocess.run([sys.executable, "-c", code], stdin=f, capture_output=True, text=True, check=True)
    return done.stdout


def stdio(pid, prompt, solution, inputs, wrong, float_tolerance=None):
    tests = {"kind": "stdio", "inputs": inputs, "outputs": [run_stdio(solution, i) for i in inputs]}
    if float_tolerance is not None:
        tests["float_tolerance"] = float_tolerance
    PROBLEMS.append(dict(id=pid, prompt=prompt, tests=tests, solution=solution,
                         wrong=[{"code": c, "verdict": v} for c, v in wrong]))


def call(pid, prompt, solution, fn_name, inputs, wrong, method=False):
    ns = {"__name__": "__main__"}
    exec(compile(solution, "solution.py", "exec"), ns)
    fn = getattr(ns["Solution"](), fn_name) if method else ns[fn_name]
    outputs = [json.loads(json.dumps(fn(*args))) for args in inputs]
    tests = {"kind": "call", "fn_name": fn_name, "inputs": inputs, "outputs": outputs}
    PROBLEMS.append(dict(id=pid, prompt=prompt, tests=tests, solution=solution,
                         wrong=[{"code": c, "verdict": v} for c, v in wrong]))


def assert_(pid, prompt, solution, code, wrong, entry_point=None):
    ns = {"__name__": "__main__"}
    exec(compile(solution, "solution.py", "exec"), ns)
    exec(compile(code, "tests.py", "exec"), ns)
    if entry_point:
        ns["check"](ns[entry_point])
    tests = {"kind": "assert", "code": code}
    if entry_point:
        tests["entry_point"] = entry_point
    PROBLEMS.append(dict(id=pid, prompt=prompt, tests=tests, solution=solution,
                         wrong=[{"code": c, "verdict": v} for c, v in wrong]))


# ----------------------------------------------------------------- stdio problems ----
stdio("stdio-sum-two", "Read two integers a and b on one line and print a + b.",
      "a, b = map(int, input().split())\nprint(a + b)\n",
      ["1 2\n", "-5 5\n", "1000000000000 7\n"],
      [("a, b = map(int, input().split())\nprint(a - b)\n", "WrongAnswer"),
       ("a, b = input().split()\nprint(a + b)\n", "WrongAnswer"),
       (WRONG_SYNTAX, "SyntaxError")])
stdio("stdio-sum-list", "The first line holds n, the second n integers. Print their sum.",
      "import sys\ndata = sys.stdin.read().split()\nn = int(data[0])\nprint(sum(map(int, data[1:1 + n])))\n",
      ["3\n1 2 3\n", "1\n-7\n", "5\n10 20 30 40 50\n"],
      [("n = int(input())\nprint(n)\n", "WrongAnswer"),
       ("n = int(input())\nxs = list(map(int, input().split()))\nprint(sum(xs[n]))\n", "RuntimeError")])
stdio("stdio-fast-input", "Read all of stdin with os.read(0, os.fstat(0).st_size); print the max of the integers.",
      "import os\ndata = os.read(0, os.fstat(0).st_size).split()\nprint(max(map(int, data[1:])))\n",
      ["3\n4 9 2\n", "2\n-1 -3\n"],
      [("import os\ndata = os.read(0, os.fstat(0).st_size).split()\nprint(min(map(int, data[1:])))\n", "WrongAnswer")])
stdio("stdio-reverse-words", "Read a line and print its words in reverse order, separated by single spaces.",
      "print(' '.join(input().split()[::-1]))\n",
      ["hello world\n", "a b c d\n", "single\n"],
      [("print(input()[::-1])\n", "WrongAnswer"), (WRONG_CRASH, "RuntimeError")])
stdio("stdio-fizzbuzz", "Read n and print FizzBuzz from 1 to n, one item per line.",
      "n = int(input())\nfor i in range(1, n + 1):\n    print('FizzBuzz' if i % 15 == 0 else 'Fizz' if i % 3 == 0 else 'Buzz' if i % 5 == 0 else i)\n",
      ["15\n", "5\n", "1\n"],
      [("n = int(input())\nfor i in range(1, n + 1):\n    print('Fizz' if i % 3 == 0 else 'Buzz' if i % 5 == 0 else i)\n", "WrongAnswer")])
stdio("stdio-palindrome", "Read a string; print YES if it reads the same backwards, else NO.",
      "s = input().strip()\nprint('YES' if s == s[::-1] else 'NO')\n",
      ["racecar\n", "abca\n", "a\n"],
      [("print('YES')\n", "WrongAnswer"), (WRONG_LOOP, "TimeLimit")])
stdio("stdio-primes-upto", "Read n (n <= 100000) and print the number of primes <= n.",
      "n = int(input())\nsieve = bytearray([1]) * (n + 1)\nsieve[0:2] = b'\\x00\\x00'[: n + 1]\n"
      "for i in range(2, int(n ** 0.5) + 1):\n    if sieve[i]:\n        sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))\nprint(sum(sieve))\n",
      ["10\n", "100000\n", "1\n"],
      [("n = int(input())\nprint(n // 2)\n", "WrongAnswer"),
       ("n = int(input())\nprint(sum(all(p % d for d in range(2, p)) for p in range(2, n + 1)))\n" * 1 +
        "while True:\n    pass\n", "TimeLimit")])
stdio("stdio-circle-area", "Read a radius r and print the area of the circle.",
      "import math\nr = float(input())\nprint(math.pi * r * r)\n",
      ["1\n", "2.5\n", "10\n"],
      [("r = float(input())\nprint(3.14 * r * r)\n", "WrongAnswer")], float_tolerance=1e-6)
stdio("stdio-sort-numbers", "Read n then n integers; print them sorted ascending on one line.",
      "n = int(input())\nprint(*sorted(map(int, input().split())))\n",
      ["4\n3 1 4 1\n", "1\n42\n", "3\n-1 -2 -3\n"],
      [("n = int(input())\nprint(*sorted(map(int, input().split()), reverse=True))\n", "WrongAnswer"),
       ("n = int(input())\nprint(*sorted(input().split()))\n", "WrongAnswer")])
stdio("stdio-grid-paths", "Read r and c; print the number of monotone lattice paths in an r x c grid modulo 1e9+7.",
      "from math import comb\nr, c = map(int, input().split())\nprint(comb(r + c - 2, r - 1) % (10**9 + 7))\n",
      ["2 2\n", "3 3\n", "1000 1000\n"],
      [("r, c = map(int, input().split())\nprint(r * c)\n", "WrongAnswer"),
       ("x = bytearray(1 << 30)\n", "MemoryLimit")])
stdio("stdio-count-vowels", "For each of t lines, print the number of vowels (aeiou, case-insensitive).",
      "t = int(input())\nfor _ in range(t):\n    print(sum(ch in 'aeiou' for ch in input().lower()))\n",
      ["2\nHello\nsky\n", "1\nAEIOU\n"],
      [("t = int(input())\nfor _ in range(t):\n    print(sum(ch in 'aeiou' for ch in input()))\n", "WrongAnswer"),
       ("while True:\n    print('spam' * 1000)\n", "OutputLimit")])
stdio("stdio-dijkstra", "Read n m, then m edges 'u v w' (1-based, undirected); print the shortest distance from 1 to n or -1.",
      "import heapq, sys\ninput = sys.stdin.readline\nn, m = map(int, input().split())\ng = [[] for _ in range(n + 1)]\n"
      "for _ in range(m):\n    u, v, w = map(int, input().split())\n    g[u].append((v, w))\n    g[v].append((u, w))\n"
      "dist = [float('inf')] * (n + 1)\ndist[1] = 0\npq = [(0, 1)]\nwhile pq:\n    d, u = heapq.heappop(pq)\n"
      "    if d > dist[u]:\n        continue\n    for v, w in g[u]:\n        if d + w < dist[v]:\n            dist[v] = d + w\n"
      "            heapq.heappush(pq, (dist[v], v))\nprint(dist[n] if dist[n] < float('inf') else -1)\n",
      ["3 3\n1 2 1\n2 3 2\n1 3 5\n", "2 0\n", "4 2\n1 2 3\n3 4 1\n"],
      [("n, m = map(int, input().split())\nprint(n - 1)\n", "WrongAnswer")])
stdio("stdio-lis", "Read n and a sequence; print the length of its longest strictly increasing subsequence.",
      "import bisect\nn = int(input())\ntails = []\nfor x in map(int, input().split()):\n    i = bisect.bisect_left(tails, x)\n"
      "    if i == len(tails):\n        tails.append(x)\n    else:\n        tails[i] = x\nprint(len(tails))\n",
      ["6\n10 9 2 5 3 7\n", "3\n1 1 1\n", "5\n1 2 3 4 5\n"],
      [("import bisect\nn = int(input())\ntails = []\nfor x in map(int, input().split()):\n    i = bisect.bisect_right(tails, x)\n"
        "    if i == len(tails):\n        tails.append(x)\n    else:\n        tails[i] = x\nprint(len(tails))\n", "WrongAnswer")])

# ------------------------------------------------------------------ call problems ----
call("call-two-sum", "Write two_sum(nums, target) returning the indices [i, j] (i < j) of the two numbers adding to target.",
     "def two_sum(nums, target):\n    seen = {}\n    for i, x in enumerate(nums):\n        if target - x in seen:\n            return [seen[target - x], i]\n        seen[x] = i\n",
     "two_sum", [[[2, 7, 11, 15], 9], [[3, 2, 4], 6], [[3, 3], 6]],
     [("def two_sum(nums, target):\n    return [0, 1]\n", "WrongAnswer"),
      ("def twosum(nums, target):\n    return [0, 1]\n", "RuntimeError")])
call("call-leetcode-climb", "LeetCode style: class Solution with climbStairs(n), the number of ways to climb n stairs taking 1 or 2 steps.",
     "class Solution:\n    def climbStairs(self, n: int) -> int:\n        a, b = 1, 1\n        for _ in range(n):\n            a, b = b, a + b\n        return a\n",
     "climbStairs", [[1], [2], [5], [45]],
     [("class Solution:\n    def climbStairs(self, n):\n        return n\n", "WrongAnswer"),
      ("class Solution:\n    def climbStairs(self, n):\n        return 1 if n < 2 else self.climbStairs(n - 1) + self.climbStairs(n - 2)\n", "TimeLimit")],
     method=True)
call("call-is-anagram", "Write is_anagram(s, t) returning whether t is an anagram of s.",
     "from collections import Counter\n\ndef is_anagram(s, t):\n    return Counter(s) == Counter(t)\n",
     "is_anagram", [["anagram", "nagaram"], ["rat", "car"], ["", ""]],
     [("def is_anagram(s, t):\n    return len(s) == len(t)\n", "WrongAnswer")])
call("call-merge-intervals", "Write merge(intervals) merging overlapping [start, end] intervals, sorted by start.",
     "def merge(intervals):\n    out = []\n    for s, e in sorted(intervals):\n        if out and s <= out[-1][1]:\n            out[-1][1] = max(out[-1][1], e)\n        else:\n            out.append([s, e])\n    return out\n",
     "merge", [[[[1, 3], [2, 6], [8, 10], [15, 18]]], [[[1, 4], [4, 5]]], [[[5, 6], [1, 2]]]],
     [("def merge(intervals):\n    return intervals\n", "WrongAnswer")])
call("call-gcd", "Write gcd(a, b).",
     "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n",
     "gcd", [[12, 18], [7, 13], [0, 5], [100, 10]],
     [("def gcd(a, b):\n    return min(a, b)\n", "WrongAnswer"),
      ("def gcd(a, b):\n    return a % b\n", "WrongAnswer")])
call("call-mean", "Write mean(xs) returning the arithmetic mean of a non-empty list as a float.",
     "def mean(xs):\n    return sum(xs) / len(xs)\n",
     "mean", [[[1, 2, 3, 4]], [[0.1, 0.2]], [[5]]],
     [("def mean(xs):\n    return sum(xs) // len(xs)\n", "WrongAnswer")])
call("call-word-freq", "Write word_freq(text) returning a dict of word -> count for the lower-cased words of text.",
     "def word_freq(text):\n    d = {}\n    for w in text.lower().split():\n        d[w] = d.get(w, 0) + 1\n    return d\n",
     "word_freq", [["the cat the hat"], ["A a A"], [""]],
     [("def word_freq(text):\n    return {w: 1 for w in text.split()}\n", "WrongAnswer")])
call("call-rotate-matrix", "Write rotate(matrix) returning the matrix rotated 90 degrees clockwise.",
     "def rotate(matrix):\n    return [list(r) for r in zip(*matrix[::-1])]\n",
     "rotate", [[[[1, 2], [3, 4]]], [[[1, 2, 3], [4, 5, 6], [7, 8, 9]]], [[[1]]]],
     [("def rotate(matrix):\n    return [list(r) for r in zip(*matrix)]\n", "WrongAnswer"),
      (WRONG_SYNTAX, "SyntaxError")])
call("call-leetcode-valid-parens", "LeetCode style: Solution.isValid(s) for bracket strings of ()[]{}.",
     "class Solution:\n    def isValid(self, s):\n        pairs = {')': '(', ']': '[', '}': '{'}\n        stack = []\n        for ch in s:\n"
     "            if ch in pairs:\n                if not stack or stack.pop() != pairs[ch]:\n                    return False\n"
     "            else:\n                stack.append(ch)\n        return not stack\n",
     "isValid", [["()[]{}"], ["(]"], ["([)]"], ["{[]}"]],
     [("class Solution:\n    def isValid(self, s):\n        return s.count('(') == s.count(')')\n", "WrongAnswer")],
     method=True)
call("call-fib-memo", "Write fib(n) for n up to 90 (use memoisation or iteration).",
     "from functools import lru_cache\n\n@lru_cache(maxsize=None)\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
     "fib", [[0], [10], [90]],
     [("def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n", "TimeLimit"),
      ("def fib(n):\n    return fib(n - 1) + fib(n - 2)\n", "RuntimeError")])

# ---------------------------------------------------------------- assert problems ----
def check(*asserts):
    return "def check(candidate):\n" + "".join(f"    assert {a}\n" for a in asserts)


assert_("he-has-close-elements", "def has_close_elements(numbers, threshold): whether any two numbers are closer than threshold.",
        "def has_close_elements(numbers, threshold):\n    s = sorted(numbers)\n    return any(b - a < threshold for a, b in zip(s, s[1:]))\n",
        check("candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True",
              "candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False",
              "candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == True"),
        [("def has_close_elements(numbers, threshold):\n    return False\n", "WrongAnswer"),
         (WRONG_SYNTAX, "SyntaxError")], entry_point="has_close_elements")
assert_("he-truncate-number", "def truncate_number(number): the decimal part of a positive float.",
        "def truncate_number(number):\n    return number % 1.0\n",
        check("candidate(3.5) == 0.5", "abs(candidate(1.33) - 0.33) < 1e-6", "abs(candidate(123.456) - 0.456) < 1e-6"),
        [("def truncate_number(number):\n    return int(number)\n", "WrongAnswer")], entry_point="truncate_number")
assert_("he-below-zero", "def below_zero(operations): whether a running balance from 0 ever drops below zero.",
        "def below_zero(operations):\n    bal = 0\n    for op in operations:\n        bal += op\n        if bal < 0:\n            return True\n    return False\n",
        check("candidate([]) == False", "candidate([1, 2, -3, 1, 2, -3]) == False", "candidate([1, 2, -4, 5, 6]) == True"),
        [("def below_zero(operations):\n    return sum(operations) < 0\n", "WrongAnswer"),
         ("def below_zero(operations):\n    return operations[0] < 0\n", "RuntimeError")], entry_point="below_zero")
assert_("he-strlen", "def strlen(string): the length of a string.",
        "def strlen(string):\n    return len(string)\n",
        check("candidate('') == 0", "candidate('x') == 1", "candidate('asdasnakj') == 9", "candidate(' a ') == 3"),
        [("def strlen(string):\n    return len(string.strip())\n", "WrongAnswer"),
         ("def strlen(string):\n    import os\n    os._exit(0)\n", "WrongAnswer")], entry_point="strlen")
assert_("he-fizz-buzz-count", "def fizz_buzz(n): how many times 7 appears in integers < n divisible by 11 or 13.",
        "def fizz_buzz(n):\n    return sum(str(i).count('7') for i in range(n) if i % 11 == 0 or i % 13 == 0)\n",
        check("candidate(50) == 0", "candidate(78) == 2", "candidate(79) == 3", "candidate(100000) == 8026"),
        [("def fizz_buzz(n):\n    return sum(1 for i in range(n) if '7' in str(i) and (i % 11 == 0 or i % 13 == 0))\n", "WrongAnswer")],
        entry_point="fizz_buzz")
assert_("mbpp-similar-elements", "Write similar_elements(a, b) returning the sorted tuple of elements common to both tuples.",
        "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))\n",
        "assert similar_elements((3, 4, 5, 6), (5, 7, 4, 10)) == (4, 5)\n"
        "assert similar_elements((1, 2, 3, 4), (5, 4, 3, 7)) == (3, 4)\n"
        "assert similar_elements((11, 12, 14, 13), (17, 15, 14, 13)) == (13, 14)\n",
        [("def similar_elements(a, b):\n    return tuple(set(a) | set(b))\n", "WrongAnswer"),
         ("def similar_elements(a, b)\n    return ()\n", "SyntaxError")])
assert_("mbpp-is-not-prime", "Write is_not_prime(n) returning True for non-prime n >= 2.",
        "import math\n\ndef is_not_prime(n):\n    return any(n % d == 0 for d in range(2, math.isqrt(n) + 1))\n",
        "assert is_not_prime(2) == False\nassert is_not_prime(10) == True\nassert is_not_prime(35) == True\nassert is_not_prime(37) == False\n",
        [("def is_not_prime(n):\n    return n % 2 == 0\n", "WrongAnswer")])
assert_("mbpp-heap-queue-largest", "Write heap_queue_largest(nums, n) returning the n largest numbers in descending order.",
        "import heapq\n\ndef heap_queue_largest(nums, n):\n    return heapq.nlargest(n, nums)\n",
        "assert heap_queue_largest([25, 35, 22, 85, 14, 65, 75, 22, 58], 3) == [85, 75, 65]\n"
        "assert heap_queue_largest([25, 35, 22, 85, 14, 65, 75, 22, 58], 2) == [85, 75]\n",
        [("import heapq\n\ndef heap_queue_largest(nums, n):\n    return heapq.nsmallest(n, nums)\n", "WrongAnswer"),
         ("def heap_queue_largest(nums, n):\n    while True:\n        pass\n", "TimeLimit")])
assert_("mbpp-remove-occ", "Write remove_occ(s, ch) removing the first and last occurrence of ch from s.",
        "def remove_occ(s, ch):\n    i = s.find(ch)\n    if i != -1:\n        s = s[:i] + s[i + 1:]\n    j = s.rfind(ch)\n    if j != -1:\n        s = s[:j] + s[j + 1:]\n    return s\n",
        "assert remove_occ('hello', 'l') == 'heo'\nassert remove_occ('abcda', 'a') == 'bcd'\nassert remove_occ('PHP', 'P') == 'H'\n"
        "assert remove_occ('abcabca', 'a') == 'bcabc'\n",
        [("def remove_occ(s, ch):\n    return s.replace(ch, '')\n", "WrongAnswer")])
assert_("mbpp-sort-matrix", "Write sort_matrix(m) sorting the rows of m by their sums ascending.",
        "def sort_matrix(m):\n    return sorted(m, key=sum)\n",
        "assert sort_matrix([[1, 2, 3], [2, 4, 5], [1, 1, 1]]) == [[1, 1, 1], [1, 2, 3], [2, 4, 5]]\n"
        "assert sort_matrix([[5, 8, 9], [6, 4, 3], [2, 1, 4]]) == [[2, 1, 4], [6, 4, 3], [5, 8, 9]]\n",
        [("def sort_matrix(m):\n    return sorted(m)\n", "WrongAnswer"),
         ("def sort_matrix(m):\n    return sorted(m, key=summ)\n", "RuntimeError")])

if __name__ == "__main__":
    ids = [p["id"] for p in PROBLEMS]
    assert len(ids) == len(set(ids)), "duplicate ids"
    path = os.path.join(HERE, "problems.jsonl")
    with open(path, "w") as f:
        for p in PROBLEMS:
            f.write(json.dumps(p, sort_keys=False) + "\n")
    kinds = {}
    for p in PROBLEMS:
        kinds[p["tests"]["kind"]] = kinds.get(p["tests"]["kind"], 0) + 1
    print(f"wrote {len(PROBLEMS)} problems to {path}: {kinds}, {sum(len(p['wrong']) for p in PROBLEMS)} wrong solutions")
