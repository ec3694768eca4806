"""A small JavaScript minifier for the scripts we write ourselves: whitespace, comments, and long local names.

It understands just enough of the language to be safe on our own ES5 code: string literals, regular
expression literals (told apart from division by what precedes them) and comments. A line break is kept
where dropping it could join two statements that rely on automatic semicolon insertion.

Renaming: every name the script declares itself (`var`, `function`, parameters) that is longer than two
characters gets a short one, everywhere it appears as a variable: one name for one name across all scopes,
so scoping is untouched. Property names (`a.name`, `{name: ...}`) are never renamed, so a declared name must
not be used as an object key that ends up read as a property elsewhere; our code reads keys only through
the same literal spelling, never through a renamed variable.
"""
from __future__ import annotations

_WORD = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")
_REGEX_AFTER_CHAR = set("(,=:[!&|?{};+-*%<>~^")
_REGEX_AFTER_WORD = {"return", "typeof", "case", "in", "of", "void", "delete", "throw", "new", "else", "do"}
_ENDS_STATEMENT = _WORD | set(")]\"'`")
_STARTS_STATEMENT = _WORD | set("\"'`([{+-!/~")


def _trailing_word(out: list[str]) -> str:
    word = []
    for chunk in reversed(out):
        for ch in reversed(chunk):
            if ch in _WORD:
                word.append(ch)
            else:
                return "".join(reversed(word))
    return "".join(reversed(word))


def minify_js(source: str) -> str:
    out: list[str] = []
    last = ""  # the last significant character written
    gap = ""  # "", " " or "\n": whitespace seen since `last`
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c in " \t\r\n":
            if c == "\n" or gap == "\n":
                gap = "\n"
            else:
                gap = " "
            i += 1
            continue
        if source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end < 0 else end
            continue
        if source.startswith("/*", i):
            end = source.find("*/", i + 2)
            if end < 0:
                raise ValueError("unterminated block comment")
            i = end + 2
            gap = gap or " "
            continue
        if gap:
            if gap == "\n" and last in _ENDS_STATEMENT and c in _STARTS_STATEMENT:
                out.append("\n")
            elif (last in _WORD and c in _WORD) or (last in "+-" and c in "+-"):
                out.append(" ")
            gap = ""
        if c in "\"'`":
            j = i + 1
            while j < n and source[j] != c:
                j += 2 if source[j] == "\\" else 1
            out.append(source[i:j + 1])
            i, last = j + 1, c
            continue
        if c == "/" and _regex_allowed(last, out):
            j, in_class = i + 1, False
            while j < n:
                ch = source[j]
                if ch == "\\":
                    j += 2
                    continue
                if ch == "[":
                    in_class = True
                elif ch == "]":
                    in_class = False
                elif ch == "/" and not in_class:
                    break
                elif ch == "\n":
                    raise ValueError(f"unterminated regular expression at offset {i}")
                j += 1
            j += 1
            while j < n and source[j] in _WORD:
                j += 1
            out.append(source[i:j])
            i, last = j, "/"
            continue
        if c == "}" and out and out[-1] == ";":
            out.pop()  # the semicolon before a closing brace is never needed
        out.append(c)
        last = c
        i += 1
    return "".join(out)


def _regex_allowed(last: str, out: list[str]) -> bool:
    if last == "" or last in _REGEX_AFTER_CHAR:
        return True
    if last in _WORD:
        return _trailing_word(out) in _REGEX_AFTER_WORD
    return False


_KEYWORDS = {"var", "function", "return", "if", "else", "for", "while", "do", "in", "of", "new", "typeof", "instanceof",
             "delete", "void", "throw", "try", "catch", "finally", "switch", "case", "default", "break", "continue",
             "this", "null", "true", "false", "undefined", "arguments", "with", "debugger"}


def _tokens(code: str) -> list[str]:
    """Minified code as tokens: identifiers/numbers, strings, regex literals, single punctuation characters."""
    out, i, n, prev = [], 0, len(code), ""
    while i < n:
        c = code[i]
        if c in "\"'`":
            j = i + 1
            while code[j] != c:
                j += 2 if code[j] == "\\" else 1
            out.append(code[i:j + 1])
            i = j + 1
        elif c == "/" and (prev == "" or prev[-1] in _REGEX_AFTER_CHAR or prev in _REGEX_AFTER_WORD):
            j, in_class = i + 1, False
            while True:
                ch = code[j]
                if ch == "\\":
                    j += 2
                    continue
                if ch == "[":
                    in_class = True
                elif ch == "]":
                    in_class = False
                elif ch == "/" and not in_class:
                    break
                j += 1
            j += 1
            while j < n and code[j] in _WORD:
                j += 1
            out.append(code[i:j])
            i = j
        elif c in _WORD:
            j = i
            while j < n and code[j] in _WORD:
                j += 1
            out.append(code[i:j])
            i = j
        else:
            out.append(c)
            i += 1
        if out[-1] not in (" ", "\n"):
            prev = out[-1]
    return out


def _is_name(token: str) -> bool:
    return token[:1] in _WORD and not token[:1].isdigit() and token not in _KEYWORDS


def _declared(tokens: list[str]) -> set[str]:
    names: set[str] = set()
    for k, token in enumerate(tokens):
        if token == "function":
            j = k + 1
            if _is_name(tokens[j]):
                names.add(tokens[j])
                j += 1
            if tokens[j] == "(":
                j += 1
                while tokens[j] != ")":
                    if _is_name(tokens[j]):
                        names.add(tokens[j])
                    j += 1
        elif token == "var":
            j, depth, expect_name = k + 1, 0, True
            while j < len(tokens):
                t = tokens[j]
                if depth == 0 and (t == ";" or t == "in" or t == "}"):
                    break
                if t in "([{":
                    depth += 1
                elif t in ")]}":
                    depth -= 1
                    if depth < 0:
                        break
                elif depth == 0 and t == ",":
                    expect_name = True
                    j += 1
                    continue
                if expect_name and _is_name(t):
                    names.add(t)
                expect_name = False
                j += 1
    return names


def _short_names(taken: set[str]):
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for first in letters:
        for second in letters + "0123456789":
            name = first + second
            if name not in taken and name not in _KEYWORDS:
                yield name


# A declared name that is also a global the script reads (`})(self)`) would be renamed at the global use too.
_GLOBALS = {"self", "window", "document", "location", "navigator", "fetch", "event", "name", "status", "open", "close",
            "top", "parent", "origin", "history", "screen", "crypto", "console", "length", "clients", "registration"}


def rename_locals(code: str, keep: tuple[str, ...] = ()) -> str:
    """Give the script's own long names two-letter ones (see the module docstring for what stays untouched)."""
    keep = tuple(keep) + tuple(_GLOBALS)
    tokens = _tokens(code)
    significant = [t for t in tokens if t not in (" ", "\n")]
    every = {t for t in significant if _is_name(t)}
    counts: dict[str, int] = {}
    for t in significant:
        counts[t] = counts.get(t, 0) + 1
    declared = sorted((d for d in _declared(significant) if len(d) > 2 and d not in keep), key=lambda d: (-counts[d], d))
    mapping = dict(zip(declared, _short_names(every)))
    out, position = [], 0
    for token in tokens:
        if token in (" ", "\n"):
            out.append(token)
            continue
        new = mapping.get(token)
        if new is not None:
            before = significant[position - 1] if position else ""
            after = significant[position + 1] if position + 1 < len(significant) else ""
            if before == "." or (before in ("{", ",") and after == ":"):
                new = None  # a property name, not the variable
        out.append(new or token)
        position += 1
    return "".join(out)
