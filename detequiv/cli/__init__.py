"""The ``detequiv`` command line.

Subcommands
-----------
``detequiv demo``
    The main job on a built-in example (what the README's first command runs).
``detequiv nc N [--blocks K] [--draw FILE]``
    Count, list and draw the non-crossing partitions of ``N`` points.
``detequiv moments LAW --order K [--latex]``
    Moments (and free cumulants) of a law: ``wishart:0.5``, ``wishart:q``,
    ``semicircle``, ``semicircle:2``, ``poisson:RATE:JUMP``, ``symbolic``.
``detequiv derive EXPR [--det NAME:DIM] [--gaussian NAME:ROWS,COLS] [--free NAME:DIM=LAW] [--check ORDER]``
    Deterministic equivalent of an expression, e.g.
    ``detequiv derive "lam*resolvent(Sigma^(1/2) @ X.T @ X @ Sigma^(1/2) / P, lam)"
    --det Sigma:D --gaussian X:P,D --check 8``; parsed safely (no eval).
``detequiv mixed WORD --free W=LAW ... [--latex] [--check]``
    Limit trace of a word in deterministic and free letters, e.g.
    ``detequiv mixed "A W A W" --free W=wishart:q``.

Bad arguments print one line saying what is wrong and how to fix it, and exit 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

from ..errors import DetEquivError, InvalidArgument
from ..plotting import figure_style, require_matplotlib

__all__ = ["main", "build_parser"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; give a whole number like 6") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give a number >= 0")
    return value


def _pos_int(text: str) -> int:
    value = _nonneg_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small; give a number >= 1")
    return value


def _add_declarations(parser: argparse.ArgumentParser) -> None:
    """The matrix declarations shared by ``derive`` and ``codegen``."""
    parser.add_argument(
        "--det",
        action="append",
        default=[],
        metavar="NAME:DIM[:general]",
        help="a deterministic DIM x DIM matrix (symmetric unless :general)",
    )
    parser.add_argument(
        "--gaussian", action="append", default=[], metavar="NAME:ROWS,COLS", help="iid N(0,1) entries"
    )
    parser.add_argument(
        "--free", action="append", default=[], metavar="NAME:DIM=LAW", help="a free rotation-invariant factor"
    )
    parser.add_argument(
        "--rect",
        action="append",
        default=[],
        metavar="NAME:ROWS,COLS",
        help="a deterministic rectangular matrix (fixed features, a sketch)",
    )
    parser.add_argument(
        "--vec",
        action="append",
        default=[],
        metavar="NAME:DIM",
        help="a deterministic vector (quadratic forms)",
    )
    parser.add_argument(
        "--order",
        metavar="NAMES",
        help="averaging order of the random matrices, comma-separated (e.g. X,F: data first)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``detequiv`` command."""
    p = argparse.ArgumentParser(
        prog="detequiv",
        description="Deterministic equivalents from planar diagrams and free cumulants.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser("demo", help="run the main job on a built-in example")
    d.add_argument("--out", default="detequiv-demo", help="folder for the figures (default: %(default)s)")
    d.add_argument("--quick", action="store_true", help="smaller Monte Carlo sizes")

    nc = sub.add_parser("nc", help="non-crossing partitions of N points")
    nc.add_argument("n", type=_nonneg_int, metavar="N")
    nc.add_argument("--blocks", type=_pos_int, metavar="K", help="only those with K blocks")
    nc.add_argument("--draw", metavar="FILE", help="draw them (PNG or SVG; needs matplotlib)")
    nc.add_argument(
        "--limit", type=_nonneg_int, default=50, help="list at most this many (default: %(default)s)"
    )

    m = sub.add_parser("moments", help="moments and free cumulants of a law")
    m.add_argument(
        "law",
        metavar="LAW",
        help="wishart:RATIO, mp:RATIO, semicircle[:VAR], poisson:RATE:JUMP, constant:C, "
        "symbolic[:NAME], deterministic:NAME",
    )
    m.add_argument("--order", type=_pos_int, required=True, metavar="K")
    m.add_argument("--latex", action="store_true", help="print LaTeX")

    dv = sub.add_parser(
        "derive", help="deterministic equivalent of one resolvent, or of two around a matrix (two-point)"
    )
    dv.add_argument("expression", metavar="EXPR", help='e.g. "lam*resolvent(Sigma @ X.T @ X / P, lam)"')
    _add_declarations(dv)
    dv.add_argument("--latex", action="store_true", help="print the result and derivation as LaTeX")
    dv.add_argument("--check", type=_pos_int, metavar="ORDER", help="check the 1/lam series to ORDER")
    _add_method(dv)

    cv = sub.add_parser(
        "curve",
        help="loss curves of a model over a ridge grid (e.g. curve ridge --spectrum powerlaw:1.2 --D 1000)",
        add_help=False,
    )
    cv.add_argument("rest", nargs=argparse.REMAINDER, help="MODEL and its options (curve ridge --help)")

    dm = sub.add_parser(
        "dmft",
        help="DMFT loss curves of a training run (e.g. dmft logistic --delta 2 --steps 100 --plot out.png)",
        add_help=False,
    )
    dm.add_argument("rest", nargs=argparse.REMAINDER, help="MODEL and its options (dmft logistic --help)")

    cg = sub.add_parser(
        "codegen", help="write a standalone numpy evaluator of a derived one-point result or a model's loss"
    )
    cg.add_argument(
        "expression",
        metavar="EXPR|MODEL",
        help='e.g. "lam*resolvent(Sigma @ X.T @ X / P, lam)", or a model: ridge, ridge-train, rf',
    )
    _add_declarations(cg)
    cg.add_argument("-o", "--output", metavar="FILE.py", help="write the module there (default: stdout)")
    cg.add_argument("--name", help="module name in its docstring (default: the file's stem)")
    _add_method(cg)

    x = sub.add_parser("mixed", help="limit trace of a word in deterministic and free letters")
    x.add_argument("word", metavar="WORD", help='letters separated by spaces, e.g. "A W A W"')
    x.add_argument(
        "--free", action="append", default=[], metavar="NAME=LAW", help="a free letter and its law"
    )
    x.add_argument("--latex", action="store_true", help="print LaTeX")
    x.add_argument("--check", action="store_true", help="also sum the planar diagrams and compare")
    return p


def _add_method(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--method",
        choices=("auto", "shapes", "pencil"),
        default="auto",
        help="shape rules first, then the general engine (auto); only one of them (shapes, pencil)",
    )


def _cmd_nc(args: argparse.Namespace) -> int:
    from ..diagrams.partitions import catalan, narayana, noncrossing_partitions

    n, k = args.n, args.blocks
    if k is not None and k > max(n, 1):
        raise InvalidArgument(f"--blocks {k} exceeds N = {n}; a partition of {n} points has 1..{n} blocks")
    count = catalan(n) if k is None else narayana(n, k)
    what = f"NC({n})" + (f" with {k} blocks" if k else "")
    formula = "Catalan" if k is None else "Narayana"
    print(f"{what}: {count} partitions ({formula} number)")
    shown = list(islice(noncrossing_partitions(n, num_blocks=k), args.limit))
    for pi in shown:
        print(f"  {pi}    Kreweras: {pi.kreweras()}")
    if count > len(shown):
        print(f"  ... {count - len(shown)} more (raise --limit to list them)")
    if args.draw:
        _draw_partitions(shown[:64], n, args.draw)
        print(f"drew {min(len(shown), 64)} partitions to {args.draw}")
    return 0


@figure_style()
def _draw_partitions(parts: Sequence[object], n: int, path: str) -> None:
    from ..diagrams.drawing import draw_blocks

    if Path(path).suffix.lower() not in (".png", ".svg", ".pdf"):
        raise InvalidArgument(f"--draw {path}: use a file name ending in .png, .svg or .pdf")
    plt = require_matplotlib()
    cols = min(6, max(1, len(parts)))
    rows = max(1, -(-len(parts) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * max(1.8, 0.45 * n), rows * 1.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, pi in zip(axes.flat, parts, strict=False):
        draw_blocks(n, pi.blocks, ax=ax, title=str(pi))  # type: ignore[attr-defined]
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _cmd_moments(args: argparse.Namespace) -> int:
    import sympy as sp

    from ..derivations.laws import parse_law

    law = parse_law(args.law)
    moments = law.moments(args.order)
    cumulants = law.cumulants(args.order)
    print(f"law: {law}")
    for k, (m, c) in enumerate(zip(moments, cumulants, strict=True), start=1):
        if args.latex:
            print(f"m_{{{k}}} = {sp.latex(sp.factor(m))}, \\quad \\kappa_{{{k}}} = {sp.latex(c)}")
        else:
            print(f"m_{k} = {sp.factor(m)}    kappa_{k} = {c}")
    return 0


def _cmd_mixed(args: argparse.Namespace) -> int:
    import sympy as sp

    from ..derivations.laws import parse_law
    from ..derivations.mixed import diagram_sum, mixed_moment

    names = args.word.split()
    if not names:
        raise InvalidArgument('WORD is empty; give letters separated by spaces, e.g. "A W A W"')
    for name in names:
        if not _NAME.match(name):
            raise InvalidArgument(
                f"letter {name!r} in WORD is not a name (letters, digits, _; starting with a letter)"
            )
    laws = {}
    for spec in args.free:
        name, sep, law_text = spec.partition("=")
        if not sep or not _NAME.match(name):
            raise InvalidArgument(f"--free {spec!r}: write NAME=LAW, e.g. --free W=wishart:0.5")
        if name not in names:
            raise InvalidArgument(f"--free {name}: {name!r} does not occur in WORD {args.word!r}")
        laws[name] = parse_law(law_text)
    expr = sp.Mul(*[sp.Symbol(s, commutative=False) for s in names])
    value = mixed_moment(expr, laws)
    shown = sp.latex(value) if args.latex else str(value)
    print(f"tr({' '.join(names)}) = {shown}")
    if args.check:
        other = diagram_sum(expr, laws)
        ok = sp.expand(other - value) == 0
        print(f"planar diagram sum {'agrees' if ok else 'DISAGREES'}: {other}")
        return 0 if ok else 1
    return 0


def _dimension(text: str, scalars: dict, where: str) -> object:
    import sympy as sp

    text = text.strip()
    if text.isdigit() and int(text) > 0:
        return sp.Integer(int(text))
    if not _NAME.match(text):
        raise InvalidArgument(f"{where}: dimension {text!r} must be a positive integer or a name such as D")
    return scalars.setdefault(text, sp.Symbol(text, positive=True))


def _declarations(args: argparse.Namespace) -> tuple[dict, dict]:
    from ..derivations.expressions import (
        Deterministic,
        DeterministicVector,
        FreeMatrix,
        Gaussian,
        Rectangular,
    )
    from ..derivations.laws import parse_law

    scalars: dict = {}
    matrices: dict = {}

    def name_of(spec: str, flag: str, sep: str) -> tuple[str, str]:
        name, ok, rest = spec.partition(sep)
        if not ok or not _NAME.match(name.strip()):
            raise InvalidArgument(f"{flag} {spec!r}: write {flag} NAME{sep}..., e.g. {_EXAMPLES[flag]}")
        if name.strip() in matrices:
            raise InvalidArgument(f"{flag} {spec!r}: {name.strip()!r} is declared twice")
        return name.strip(), rest

    for spec in args.det:
        name, dim = name_of(spec, "--det", ":")
        dim, general, kind = dim.partition(":")
        if general and kind != "general":
            raise InvalidArgument(
                f"--det {spec!r}: the only option is ':general' (not symmetric), e.g. --det M:D:general"
            )
        matrices[name] = Deterministic(name, _dimension(dim, scalars, f"--det {spec}"), symmetric=not general)
    for spec in args.vec:
        name, dim = name_of(spec, "--vec", ":")
        matrices[name] = DeterministicVector(name, _dimension(dim, scalars, f"--vec {spec}"))
    for flag, specs, cls in (("--gaussian", args.gaussian, Gaussian), ("--rect", args.rect, Rectangular)):
        for spec in specs:
            name, dims = name_of(spec, flag, ":")
            parts = dims.split(",")
            if len(parts) != 2:
                raise InvalidArgument(f"{flag} {spec!r}: give two dimensions, e.g. {_EXAMPLES[flag]}")
            rows, cols = (_dimension(d, scalars, f"{flag} {spec}") for d in parts)
            matrices[name] = cls(name, (rows, cols))
    for spec in args.free:
        name, rest = name_of(spec, "--free", ":")
        dim, ok, law = rest.partition("=")
        if not ok:
            raise InvalidArgument(f"--free {spec!r}: write --free NAME:DIM=LAW, e.g. --free B:D=wishart:1/2")
        matrices[name] = FreeMatrix(name, _dimension(dim, scalars, f"--free {spec}"), parse_law(law))
    if not matrices:
        raise InvalidArgument(
            "no matrices declared; declare each with --det NAME:DIM, --gaussian NAME:ROWS,COLS "
            "or --free NAME:DIM=LAW"
        )
    return matrices, scalars


_EXAMPLES = {
    "--det": "--det Sigma:D",
    "--vec": "--vec u:D",
    "--gaussian": "--gaussian X:P,D",
    "--rect": "--rect F:N,D",
    "--free": "--free B:D=wishart:1/2",
}


def _cmd_derive(args: argparse.Namespace) -> int:
    from ..derivations.derive import derive, two_point_parts
    from ..derivations.parser import parse_expression

    matrices, scalars = _declarations(args)
    expr = parse_expression(args.expression, matrices, scalars=scalars)
    order = tuple(n.strip() for n in args.order.split(",") if n.strip()) if args.order else None
    if order is not None and two_point_parts(expr) is not None:
        raise InvalidArgument("--order applies to one-point expressions (one resolvent)")
    eq = derive(expr, order=order, method=args.method)
    if args.latex:
        from ..codegen.latex import to_latex

        print(to_latex(eq))
    else:
        print(eq)
    if args.check:
        result = eq.check_series(args.check)
        print(result)
        return 0 if result.passed else 1
    return 0


def _cmd_curve(args: argparse.Namespace) -> int:
    from .curve import curve_main

    return curve_main(args.rest)


def _cmd_dmft(args: argparse.Namespace) -> int:
    from ..cli.dmft import dmft_main

    return dmft_main(args.rest)


def _cmd_codegen(args: argparse.Namespace) -> int:
    from ..codegen.pycode import loss_to_module, to_module
    from ..derivations.contraction import Contracted
    from ..derivations.derive import derive
    from ..derivations.general import PencilEquivalent
    from ..derivations.onepoint import OnePoint
    from ..derivations.parser import parse_expression
    from .curve import MODEL_NAMES, model_loss

    name = args.name or (Path(args.output).stem if args.output else "evaluator")
    if not name.isidentifier():
        raise InvalidArgument(f"--name {name!r} is not a Python identifier; pass --name my_evaluator")
    if args.expression in MODEL_NAMES:  # a named learning model: its derived loss
        source = loss_to_module(model_loss(args.expression), name)
        return _write_module(source, args.output)
    matrices, scalars = _declarations(args)
    expr = parse_expression(args.expression, matrices, scalars=scalars)
    order = tuple(n.strip() for n in args.order.split(",") if n.strip()) if args.order else None
    eq = derive(expr, order=order, method=args.method)
    if not isinstance(eq, (OnePoint, Contracted, PencilEquivalent)):
        if args.method == "shapes":
            raise InvalidArgument(
                f"codegen writes evaluators of one-point and general-engine results, not of a "
                f"{type(eq).__name__}; drop --method shapes to generate it from the general engine"
            )
        eq = derive(expr, order=order, method="pencil")  # e.g. two-point forms: their pencil
    return _write_module(to_module(eq, name), args.output)


def _write_module(source: str, output: str | None) -> int:
    if output:
        Path(output).write_text(source)
        print(f"wrote {output} ({len(source.splitlines())} lines); import it and call evaluate(lam, ...)")
    else:
        print(source)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..cli.demo import run_demo

    return run_demo(out=Path(args.out), quick=args.quick)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``detequiv`` command; returns the exit status."""
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:2] in (["curve", "-h"], ["curve", "--help"]):  # the subcommand's own parser answers
        argv = ["curve", "ridge", "--help"]
    if raw[:2] in (["dmft", "-h"], ["dmft", "--help"]):
        argv = ["dmft", "logistic", "--help"]
    args = parser.parse_args(argv)
    handlers = {
        "nc": _cmd_nc,
        "moments": _cmd_moments,
        "mixed": _cmd_mixed,
        "derive": _cmd_derive,
        "codegen": _cmd_codegen,
        "curve": _cmd_curve,
        "dmft": _cmd_dmft,
        "demo": _cmd_demo,
    }
    t0 = time.perf_counter()
    try:
        status = handlers[args.command](args)
    except DetEquivError as exc:
        print(f"detequiv {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if args.command == "demo":
        print(f"done in {time.perf_counter() - t0:.1f} s")
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
