#!/usr/bin/env python3
"""The crate's module graph, from the paths its code names (`crate::…`,
`super::…`; test code left out), and a check that it has no cycle.

  .ci/module_graph.py [--depth N] [--doc FILE]

Prints `module -> the modules it uses`, one line each, at depth N (1: the
crate's top-level modules, the default; 2: their children too), and exits
1 if the graph has a cycle (each printed as CYCLE: a -> b -> a) or if a
module uses `app`, the composition root, which only main may. With
--doc, the depth-1 graph must also be what FILE shows between the lines
`<!-- module graph -->` and `<!-- /module graph -->` (regenerate it with
this script when the imports change).
"""
import argparse
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    return None if rel in (["lib"], ["main"]) else rel


def as_module(parts):
    """The longest prefix of `parts` that is a module (a file or folder)."""
    for n in range(len(parts), 0, -1):
        base = os.path.join(ROOT, *parts[:n])
        if os.path.isfile(base + ".rs") or os.path.isfile(os.path.join(base, "mod.rs")):
            return parts[:n]
    return parts[:1]


def graph(depth):
    edges = defaultdict(set)
    for dirpath, _, files in os.walk(ROOT):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            me = module_of(path)
            if me is None:
                continue
            text = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0]
            targets = [m.group(1).split("::") for m in re.finditer(r"crate::([a-z_]+(?:::[a-z_]+)*)", text)]
            targets += [me[:-1] + [m.group(1)] for m in re.finditer(r"\bsuper::([a-z_]+)", text)]
            a = "::".join(me[:depth])
            for t in targets:
                b = "::".join(as_module(t)[:depth])
                if a != b:
                    edges[a].add(b)
    return edges


def cycles(edges):
    found, stack, state = [], [], {}

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n)
    return found


def text(edges):
    return "\n".join(f"{a} -> {', '.join(sorted(edges[a]))}" for a in sorted(edges))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--doc")
    args = p.parse_args()
    edges = graph(args.depth)
    print(text(edges))
    bad = cycles(edges)
    for c in bad:
        print("CYCLE: " + " -> ".join(c))
    for a in sorted(edges):
        if a.split("::")[0] != "app" and any(b.split("::")[0] == "app" for b in edges[a]):
            print(f"UPWARD: {a} uses app, the composition root")
            bad.append(a)
    if args.doc:
        doc = open(args.doc, encoding="utf-8").read()
        shown = doc.split("<!-- module graph -->")[1].split("<!-- /module graph -->")[0]
        shown = shown.replace("```text", "").replace("```", "").strip()
        if shown != text(graph(1)):
            print(f"{args.doc}: the module graph it shows is stale; regenerate it with .ci/module_graph.py")
            return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
