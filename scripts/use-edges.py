#!/usr/bin/env python3
"""Lists the edges "file A uses an item of file B" between the library's source
files and the pairs of files that use each other (2-cycles).

Usage: scripts/use-edges.py [SRC_DIR] [--edges]
  SRC_DIR  the crate's src folder (default crates/redkit/src)
  --edges  print every edge, not only the summary and the cycles

A path is read wherever it appears (`use` declarations and paths written in
code such as `super::x::f()`), resolved from `crate::`, `super::` and `self::`
(and, inside a `use` block, from the module's own child modules) to the file
of the deepest module it names. An item that the module file re-exports with
`pub use` / `pub(crate) use` / `pub(super) use` is followed to the file that
defines it, so importing through a `mod.rs` is counted as importing the file
behind it. Declaring a child module (`mod x;`) is not an edge. Exits 1 when a
2-cycle exists.
"""

import os
import re
import sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
SRC = os.path.abspath(args[0] if args else "crates/redkit/src")
SHOW_EDGES = "--edges" in sys.argv

# module path (tuple) -> file, and file -> module path
modules = {}
for root, _, names in os.walk(SRC):
    for name in names:
        if not name.endswith(".rs"):
            continue
        path = os.path.join(root, name)
        rel = os.path.relpath(path, SRC)
        parts = rel[:-3].split(os.sep)
        if parts[-1] in ("mod", "lib", "main"):
            parts = parts[:-1]
        modules[tuple(parts)] = rel


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    # string literals would only add noise (e.g. "crate::x" in a message)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


sources = {}
for mod, rel in modules.items():
    with open(os.path.join(SRC, rel), encoding="utf-8") as f:
        sources[rel] = strip_comments(f.read())


def expand_use_tree(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, t):
        depth = 0
        if "{" not in t:
            out.append(prefix + t)
            return
        i = t.index("{")
        head = t[:i]
        body = t[i + 1 : t.rindex("}")]
        items, cur = [], ""
        for ch in body:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                items.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            items.append(cur)
        for item in items:
            if item:
                walk(prefix + head, item)

    walk("", tree)
    return [re.sub(r"\bas\w+$", "", p).rstrip(":") for p in out]


def absolute(segments, here):
    """Segments of a path written in module `here` -> absolute module path, or None."""
    segs = list(segments)
    base = list(here)
    if not segs:
        return None
    if segs[0] == "crate":
        return segs[1:]
    if segs[0] in ("super", "self"):
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                if not base:
                    return None
                base = base[:-1]
            segs = segs[1:]
        return base + segs
    return None


def use_target(segs, here):
    """Segments of one `use` path in module `here` -> absolute path, or None
    (an outside crate)."""
    if segs[0] in ("crate", "super", "self"):
        return absolute(segs, here)
    if tuple(list(here) + [segs[0]]) in modules:
        return list(here) + segs
    return None


# re-exports: (module, name) -> absolute path of what it points to
reexports = {}
for mod, rel in modules.items():
    for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", sources[rel]):
        for p in expand_use_tree(m.group(1)):
            segs = [s for s in p.split("::") if s]
            if not segs or segs[-1] in ("*", "self"):
                continue
            target = use_target(segs, mod)
            if target:
                reexports[(mod, segs[-1])] = target


def resolve(path, seen=0):
    """Absolute path -> the file defining it (deepest module, re-exports followed)."""
    path = list(path)
    for cut in range(len(path), -1, -1):
        mod = tuple(path[:cut])
        if mod in modules:
            rest = path[cut:]
            if rest and (mod, rest[0]) in reexports and seen < 10:
                target = reexports[(mod, rest[0])]
                return resolve(target + rest[1:], seen + 1)
            return modules[mod]
    return None


def inline_modules(text):
    """Spans (start, end, name) of inline `mod name { ... }` blocks."""
    spans = []
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        spans.append((m.start(), i, m.group(1)))
    return spans


def module_at(mod, spans, pos):
    """The module a position of a file is in (the file's, or an inline one)."""
    inner = [name for start, end, name in spans if start <= pos < end]
    return tuple(list(mod) + inner)


edges = {}
PATH = re.compile(r"\b((?:crate|super|self)(?:::(?:\w+|\{[^;]*?\}))+)")
for mod, rel in modules.items():
    text = sources[rel]
    spans = inline_modules(text)
    found = set()
    # `use` declarations, including those naming a child module directly
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        here = module_at(mod, spans, m.start())
        for p in expand_use_tree(m.group(1)):
            segs = [s for s in p.split("::") if s and s != "*"]
            if not segs:
                continue
            target = use_target(segs, here)
            if target is not None:
                found.add(resolve(target))
    # paths written in code
    for m in PATH.finditer(text):
        if "{" in m.group(1):
            continue
        target = absolute(m.group(1).split("::"), module_at(mod, spans, m.start()))
        if target is not None:
            found.add(resolve(target))
    found.discard(None)
    found.discard(rel)
    edges[rel] = found

count = sum(len(v) for v in edges.values())
if SHOW_EDGES:
    for src in sorted(edges):
        for dst in sorted(edges[src]):
            print(f"{src} -> {dst}")
cycles = sorted(
    (a, b) for a in edges for b in edges[a] if a < b and a in edges.get(b, ())
)
print(f"{len(modules)} files, {count} use edges, {len(cycles)} two-file cycles")
for a, b in cycles:
    print(f"  cycle: {a} <-> {b}")
sys.exit(1 if cycles else 0)
