#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, from the end-to-end tests' payloads.

    fuzz/seeds.py OUT_DIR

Every string literal of tests/e2e/**/*.rs (and the shipped gateway*.toml files) is read
(escapes decoded, `format!` placeholders filled with `x`, a length with `5`) and filed under
the targets whose input it looks like: request targets and paths, queries, `return_to`
values, cookie headers, raw HTTP/1 requests, media types and header names, configuration
fragments. The hand-written seeds in fuzz/seeds/<target>/ (the structured targets' formats)
are copied beside them. Each seed is one file in OUT_DIR/<target>/; duplicates are dropped and
each target keeps at most MAX_SEEDS, the shortest first. Python 3 standard library only.
"""

import hashlib
import os
import re
import shutil
import sys

MAX_SEEDS = 250
MAX_LEN = 4096
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

LITERAL = re.compile(
    r'(?P<raw>b?r(?P<hashes>#*)"(?P<rbody>.*?)"(?P=hashes))|(?P<plain>b?"(?P<body>(?:[^"\\]|\\.)*)")',
    re.S,
)
ESCAPE = re.compile(r'\\(?:x([0-9a-fA-F]{2})|u\{([0-9a-fA-F]+)\}|\n\s*|(.))', re.S)
SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}
PLACEHOLDER = re.compile(r"\{[A-Za-z0-9_.:?#]*\}")


def unescape(body):
    def one(m):
        if m.group(1):
            return chr(int(m.group(1), 16))
        if m.group(2):
            return chr(int(m.group(2), 16))
        if m.group(3) is None:
            return ""  # a line continuation
        return SIMPLE.get(m.group(3), m.group(3))

    return ESCAPE.sub(one, body)


def literals(text):
    # Drop line comments that start a line (doc comments quote payloads in backticks).
    text = "\n".join(l for l in text.split("\n") if not l.lstrip().startswith("//"))
    for m in LITERAL.finditer(text):
        if m.group("raw"):
            yield m.group("rbody")
        else:
            yield unescape(m.group("body"))


def fill(s, length="5"):
    s = PLACEHOLDER.sub(lambda m: length if "len" in m.group(0) else "x", s)
    return s.replace("{{", "{").replace("}}", "}")


def classify(lit, seeds):
    s = fill(lit)
    b = s.encode("utf-8", "surrogateescape")
    if not s or len(b) > MAX_LEN:
        return
    if " HTTP/1." in s and ("\r\n" in s or "\n" in s):
        framing = s.replace("Content-Length: x", "Content-Length: 5").encode("latin-1", "replace")
        seeds["framing"].add(b"\x01\x00" + framing)  # read bodies, written whole
        seeds["framing"].add(b"\x02\x01\x07" + framing)  # pieces of 1 and 7 bytes
        first = s.split("\n", 1)[0].split(" ")
        if len(first) >= 2:
            classify_target(first[1], seeds)
        for line in s.split("\n"):
            name, _, value = line.partition(":")
            value = value.strip()
            if name.lower() == "cookie":
                seeds["cookies"].add(b"\x00" + value.encode())
            elif name.lower() in ("accept", "content-type"):
                seeds["headers"].add(headers_seed(name.lower(), value))
        return
    if "\n" not in s and "\r" not in s:
        if s.startswith("/") or s.startswith("https://") or s.startswith("http://"):
            classify_target(s, seeds)
        if "=" in s and ("; " in s or "sg-" in s or s.count("=") == 1) and " " not in s.split("=")[0]:
            seeds["cookies"].add(b"\x00" + b)
            seeds["cookies"].add(b"\x03" + b)
            if "=" in s and " " not in s and not s.startswith("/"):
                seeds["query"].add(b)
        if re.fullmatch(r"[A-Za-z*]+/[A-Za-z0-9.+*-]+(\s*[;,].*)?", s):
            seeds["headers"].add(headers_seed("accept", s))
            seeds["headers"].add(headers_seed("content-type", s))
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.~-]*-[A-Za-z0-9_.~-]+", s):
            seeds["headers"].add(b"text/html\napplication/json\n" + b)
    if re.search(r"^\s*\[[a-z_.\[\]]+\]\s*$", s, re.M) or re.search(r"^[a-z_]+ = ", s, re.M):
        seeds["config"].add(b)


def headers_seed(which, value):
    v = value.encode("utf-8", "surrogateescape")
    return (v + b"\n\n" if which == "accept" else b"\n" + v + b"\n") + b"x-auth-user"


def classify_target(t, seeds):
    b = t.encode("utf-8", "surrogateescape")
    seeds["return_to"].add(b"\x00" + b)
    seeds["return_to"].add(b"\x01" + b)
    if t.startswith("https://gw.example.com") or t.startswith("http"):
        seeds["return_to"].add(b"\x01" + b)
    if t.startswith("/"):
        path, _, query = t.partition("?")
        seeds["path"].add(path.encode("utf-8", "surrogateescape"))
        if query:
            seeds["query"].add(query.encode("utf-8", "surrogateescape"))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    targets = ["path", "query", "cookies", "framing", "tokens", "return_to", "headers",
               "config", "oidc_claims", "logout_token", "flow"]
    seeds = {t: set() for t in targets}
    for d, _, files in os.walk(os.path.join(ROOT, "tests", "e2e")):
        for f in sorted(files):
            if f.endswith(".rs"):
                with open(os.path.join(d, f), encoding="utf-8") as fh:
                    for lit in literals(fh.read()):
                        classify(lit, seeds)
    for f in sorted(os.listdir(ROOT)):
        if f.startswith("gateway") and f.endswith(".toml"):
            with open(os.path.join(ROOT, f), "rb") as fh:
                seeds["config"].add(fh.read())
    for t in targets:
        mine = os.path.join(HERE, "seeds", t)
        if os.path.isdir(mine):
            for f in sorted(os.listdir(mine)):
                with open(os.path.join(mine, f), "rb") as fh:
                    seeds[t].add(fh.read())
    for t in targets:
        d = os.path.join(out, t)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        chosen = sorted(seeds[t], key=lambda s: (len(s), s))[:MAX_SEEDS]
        for s in chosen:
            with open(os.path.join(d, hashlib.sha1(s).hexdigest()[:16]), "wb") as fh:
                fh.write(s)
        print(f"{t}: {len(chosen)} seeds")


if __name__ == "__main__":
    main()
