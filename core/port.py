"""Port a Toil script to flow by changing its imports and names alone.

``python -m flow.core.port script.py [...]`` prints the ported script (``-i`` rewrites the files in
place, ``-o DIR`` writes them to DIR). It changes two kinds of tokens and nothing else:

* module paths in ``import`` statements: ``toil.job`` -> ``flow.core.job`` and the others of
  :data:`MODULES` (README, "Porting from Toil");
* names that say "Toil": ``Toil`` -> ``Flow``, ``addToilOptions`` -> ``addFlowOptions``,
  ``startToil`` -> ``startFlow``, ``ToilException`` -> ``FlowError`` ...

Strings, comments and variable names such as ``toil`` are left alone, so the ported script
behaves as the original does.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tokenize

#: Toil module -> flow module. Longest prefix wins: a module not listed goes under the nearest
#: listed one (``toil.server`` -> ``flow.core.server``) and fails to import, naming what is missing.
MODULES = {
    "toil": "flow.core",
    "toil.common": "flow.core.common",
    "toil.job": "flow.core.job",
    "toil.exceptions": "flow.core.exceptions",
    "toil.leader": "flow.core.exceptions",
    "toil.fileStores": "flow.core.filestore",
    "toil.fileStores.abstractFileStore": "flow.core.filestore",
    "toil.jobStores.abstractJobStore": "flow.jobstores.abstract",
    "toil.jobStores.fileJobStore": "flow.jobstores.file",
    "toil.batchSystems.abstractBatchSystem": "flow.batchsystems.abstract",
    "toil.lib": "flow.lib",
    "toil.lib.io": "flow.lib.io",
    "toil.lib.misc": "flow.lib.misc",
    "toil.lib.docker": "flow.lib.docker",
    "toil.realtimeLogger": "flow.realtimeLogger",
}

#: Names whose flow counterpart is not the plain "Toil" -> "Flow" substitution.
NAMES = {
    "ToilException": "FlowError",
    "AbstractFileStore": "FileStore",
    "AbstractJobStore": "JobStore",
}


def port_module(name: str) -> str:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in MODULES:
            return ".".join([MODULES[head], *parts[cut:]])
    return name


def port_name(name: str) -> str:
    if name in NAMES:
        return NAMES[name]
    return name.replace("Toil", "Flow")


def port_source(source: str) -> str:
    """The ported text of a Toil script (tokens changed in place; layout kept)."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    out: list[tokenize.TokenInfo] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == tokenize.NAME and tok.string in ("import", "from") and _starts_statement(tokens, i):
            i = _port_import(tokens, i, out)
            continue
        if tok.type == tokenize.NAME and "Toil" in tok.string:
            tok = tok._replace(string=port_name(tok.string))
        out.append(tok)
        i += 1
    return _untokenize(out, source)


def _starts_statement(tokens: list[tokenize.TokenInfo], i: int) -> bool:
    prev = next((t for t in reversed(tokens[:i]) if t.type not in (tokenize.COMMENT, tokenize.NL)), None)
    return prev is None or prev.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT) or prev.string == ";"


def _port_import(tokens: list[tokenize.TokenInfo], i: int, out: list[tokenize.TokenInfo]) -> int:
    """Rewrite the dotted module paths of one import statement; returns the index after it."""
    j = i
    while j < len(tokens) and tokens[j].type not in (tokenize.NEWLINE, tokenize.ENDMARKER):
        j += 1
    statement = tokens[i:j]
    k = 0
    after_as = False
    importing_names = statement[0].string == "from"  # names after 'import' in 'from m import'
    in_module = True
    while k < len(statement):
        tok = statement[k]
        if tok.type == tokenize.NAME and tok.string == "import":
            in_module = not importing_names
            out.append(tok)
            k += 1
            continue
        if tok.type == tokenize.NAME and tok.string == "as":
            after_as = True
            out.append(tok)
            k += 1
            continue
        if tok.type == tokenize.NAME and in_module and not after_as and tok.string not in ("from",):
            end = k + 1
            while end + 1 < len(statement) and statement[end].string == "." and statement[end + 1].type == tokenize.NAME:
                end += 2
            dotted = "".join(t.string for t in statement[k:end])
            ported = port_module(dotted)
            out.append(tok._replace(string=ported, end=statement[end - 1].end))
            k = end
            continue
        if tok.type == tokenize.NAME and not after_as and "Toil" in tok.string:
            tok = tok._replace(string=port_name(tok.string))
        if tok.string == ",":
            after_as = False
        out.append(tok)
        k += 1
    return j


def _untokenize(tokens: list[tokenize.TokenInfo], source: str) -> str:
    """Rebuild the text from the original, replacing each changed token's span."""
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    pieces: list[str] = []
    pos = 0
    for tok in tokens:
        if tok.type in (tokenize.ENDMARKER,) or tok.start[0] > len(lines):
            continue
        start = offsets[tok.start[0] - 1] + tok.start[1]
        end = offsets[tok.end[0] - 1] + tok.end[1]
        if start < pos:
            continue
        pieces.append(source[pos:start])
        pieces.append(tok.string)
        pos = end
    pieces.append(source[pos:])
    return "".join(pieces)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flow.core.port", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scripts", nargs="+", help="Toil scripts to port")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-i", "--in-place", action="store_true", help="rewrite the scripts in place")
    where.add_argument("-o", "--output-dir", help="write the ported scripts to this directory")
    args = parser.parse_args(argv)
    for path in args.scripts:
        try:
            with open(path, encoding="utf-8") as handle:
                ported = port_source(handle.read())
        except (OSError, SyntaxError, tokenize.TokenError) as exc:
            print(f"flow port: error: cannot port {path}: {exc}", file=sys.stderr)
            return 1
        if args.in_place or args.output_dir:
            target = path if args.in_place else os.path.join(args.output_dir, os.path.basename(path))
            if args.output_dir:
                os.makedirs(args.output_dir, exist_ok=True)
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(ported)
        else:
            sys.stdout.write(ported)
    return 0


if __name__ == "__main__":
    sys.exit(main())
