"""A strict reader for the subset of Graphviz DOT that `rnix compose graph --format dot` writes.

Graphviz may not be installed where tests run, so the tests parse the output themselves: a token
stream (quoted strings with `\\"` escapes, bare identifiers, punctuation) and a recursive-descent
parser for `digraph ID { ... }` with `subgraph`, `a = b`, `node [..]`, node and edge statements. Any
other input raises ValueError, so a quote that escaped its string fails the test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|([A-Za-z_][A-Za-z0-9_.]*|[0-9]+)|(->|[{}\[\];=,]))', re.S)


def tokens(source: str) -> list[str]:
    out, pos = [], 0
    while pos < len(source.rstrip()):
        match = _TOKEN.match(source, pos)
        if match is None:
            raise ValueError(f"bad DOT at {pos}: {source[pos : pos + 30]!r}")
        out.append(match.group(match.lastindex or 0))
        pos = match.end()
    return out


def unquote(token: str) -> str:
    if not token.startswith('"'):
        return token
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), token[1:-1])


@dataclass
class Graph:
    name: str
    attrs: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    edge_attrs: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    subgraphs: list[Graph] = field(default_factory=list)


class _Parser:
    def __init__(self, source: str) -> None:
        self.toks = tokens(source)
        self.i = 0

    def take(self, expected: str | None = None) -> str:
        if self.i >= len(self.toks):
            raise ValueError("unexpected end of DOT")
        tok = self.toks[self.i]
        if expected is not None and tok != expected:
            raise ValueError(f"expected {expected!r}, got {tok!r}")
        self.i += 1
        return tok

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def ident(self) -> str:
        tok = self.take()
        if tok in {"{", "}", "[", "]", ";", "=", ",", "->"}:
            raise ValueError(f"expected an ID, got {tok!r}")
        return unquote(tok)

    def attrs(self) -> dict[str, str]:
        out = {}
        self.take("[")
        while self.peek() != "]":
            key = self.ident()
            self.take("=")
            out[key] = self.ident()
            if self.peek() == ",":
                self.take()
        self.take("]")
        return out

    def body(self, graph: Graph) -> None:
        self.take("{")
        while self.peek() != "}":
            if self.peek() == "subgraph":
                self.take()
                sub = Graph(self.ident())
                self.body(sub)
                graph.subgraphs.append(sub)
                continue
            first = self.ident()
            if self.peek() == "=":
                self.take()
                graph.attrs[first] = self.ident()
            elif self.peek() == "->":
                self.take()
                graph.edges.append((first, self.ident()))
                if self.peek() == "[":
                    graph.edge_attrs[graph.edges[-1]] = self.attrs()
            elif first in ("node", "edge", "graph"):
                self.attrs()
            else:
                graph.nodes[first] = self.attrs() if self.peek() == "[" else {}
            self.take(";")
        self.take("}")


def parse(source: str) -> Graph:
    parser = _Parser(source)
    parser.take("digraph")
    graph = Graph(parser.ident())
    parser.body(graph)
    if parser.peek() is not None:
        raise ValueError("text after the graph")
    return graph
