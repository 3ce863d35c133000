"""``tlt-pull``: list, download and publish models in a model registry (TLT's NGC puller).

TLT v1's ``tlt-pull`` talks to NGC; this one talks to a registry folder on local disk, gs:// or
s3:// (`tlt.io.registry`), chosen with ``-r/--registry`` or ``$TLT_REGISTRY``. The guide's flags
work unchanged; the NGC-only ``-k``, ``-o`` and ``-t`` are accepted and ignored. This project's
additions: ``--publish`` uploads a model so others can pull it; ``--alias`` pulls the version an
alias (``production``) names; ``--promote`` moves an alias by hand and ``--history`` shows its
promotions (`tlt.io.registry_aliases`). A download writes only inside ``-d`` (names and paths
read from the registry are validated first), and concurrent publishes to any backend never lose
a version (see `tlt.io.registry`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from tlt.cli._common import HelpFormatter, run_main, setup_logging
from tlt.errors import RegistryError, TLTError
from tlt.io.registry import (
    APPLICATIONS, DEFAULT_ALIAS, Registry, aliases, current, history, promote, resolve,
)

__all__ = ["main", "build_parser", "REGISTRY_ENV"]

PROG = "tlt-pull"
REGISTRY_ENV = "TLT_REGISTRY"
_LOG = logging.getLogger(PROG)
_RULE = "-" * 80


class _UsageError(TLTError):
    """Flags that parse but do not make a valid request (argparse's exit code for misuse)."""

    exit_code = 2


class _Formatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in ``-h`` (`HelpFormatter`), and the epilog's examples kept line by line."""


def build_parser() -> argparse.ArgumentParser:
    """The ``tlt-pull`` argument parser (TLT v1's flags plus ``-r`` and ``--publish``)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="List, download and publish models in a model registry (a folder on local "
                    "disk, gs:// or s3:// with an index.json).",
        epilog="examples:\n"
               "  tlt-pull -r gs://bucket/models --list models\n"
               "  tlt-pull -r gs://bucket/models --list_versions -m resnet18_cls\n"
               "  tlt-pull -r gs://bucket/models -m resnet18_cls -v 1 -d ./models\n"
               "  tlt-pull -r gs://bucket/models --publish out/model.tlt -m resnet18_cls -v 2 "
               "--task classification\n"
               "  tlt-pull -r gs://bucket/models --promote 2 -m resnet18_cls\n"
               "  tlt-pull -r gs://bucket/models -m resnet18_cls --alias production -d ./models\n"
               "  tlt-pull -r gs://bucket/models --history -m resnet18_cls\n\n"
               "--publish, --alias, --promote and --history are this project's additions to TLT's "
               "tlt-pull; --publish creates the registry (its index.json) on first use.",
        formatter_class=_Formatter)
    parser.add_argument("-r", "--registry", metavar="URI",
                        help=f"registry root: local folder, gs:// or s3:// URI "
                             f"(default: ${REGISTRY_ENV})")
    parser.add_argument("--list", choices=["models"], help="list the models in the registry")
    parser.add_argument("-lm", "--list_models", action="store_true",
                        help="same as --list models")
    parser.add_argument("--list_versions", action="store_true",
                        help="list the versions of the model given with -m")
    parser.add_argument("-m", "--model_name", metavar="NAME", help="model name")
    parser.add_argument("-v", "--version", help="model version ('latest' for the highest one)")
    parser.add_argument("-d", "--dir", default=".",
                        help="download into DIR/<name>_v<version> (default: current folder)")
    publish = parser.add_argument_group("publishing (this project's addition)")
    publish.add_argument("--publish", nargs="+", metavar="FILE_OR_DIR",
                         help="upload these files (or a folder's contents) as -m NAME -v VERSION")
    publish.add_argument("--task", choices=sorted(APPLICATIONS),
                         help="the model's task, shown as its Application")
    publish.add_argument("--description", help="free text shown by --list models")
    publish.add_argument("--precision", help="precision column (default FP32)")
    publish.add_argument("--overwrite", action="store_true",
                         help="replace an existing version (versions are otherwise immutable; "
                              "one an alias names never is)")
    alias = parser.add_argument_group("aliases and promotion (this project's addition)")
    alias.add_argument("--alias", metavar="ALIAS",
                       help=f"download the version this alias names instead of -v; the alias "
                            f"--promote moves and --history shows (default: {DEFAULT_ALIAS})")
    alias.add_argument("--promote", metavar="VERSION",
                       help="move the alias of -m NAME to VERSION by hand (atomic; recorded in "
                            "the history)")
    alias.add_argument("--history", action="store_true",
                       help="print the promotion history of the alias of -m NAME")
    ngc = parser.add_argument_group("NGC options (accepted for compatibility, ignored)")
    ngc.add_argument("-k", "--key", help="NGC API key")
    ngc.add_argument("-o", "--org", help="NGC organisation")
    ngc.add_argument("-t", "--team", help="NGC team")
    parser.add_argument("--verbose", action="store_true", help="log debug detail")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tlt-pull``; returns the exit code (0 on success)."""
    try:
        return run_main(PROG, _main, argv)
    except SystemExit as exc:  # argparse's --help (0) and unparseable flags (2)
        return exc.code if isinstance(exc.code, int) else 0


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.key or args.org or args.team:
        _LOG.info("-k/--key, -o/--org and -t/--team are NGC options and are ignored: access to "
                  "the registry comes from its storage credentials")
    mode = _mode(args)
    registry = Registry(_registry_uri(args.registry))
    if mode == "list":
        _print_models(registry)
    elif mode == "versions":
        _print_versions(registry, args.model_name)
    elif mode == "publish":
        _publish(registry, args)
    elif mode == "promote":
        _promote(registry, args.model_name, args.promote, args.alias or DEFAULT_ALIAS)
    elif mode == "history":
        _print_history(registry, args.model_name, args.alias or DEFAULT_ALIAS)
    else:
        _download(registry, args.model_name, args.version, args.alias, Path(args.dir))
    return 0


_MODE_FLAGS = {"versions": "--list_versions", "publish": "--publish", "promote": "--promote",
               "history": "--history"}


def _mode(args: argparse.Namespace) -> str:
    modes = [m for m, on in (("list", args.list == "models" or args.list_models),
                             ("versions", args.list_versions),
                             ("publish", bool(args.publish)),
                             ("promote", bool(args.promote)),
                             ("history", args.history)) if on]
    if not modes and args.model_name:
        modes = ["download"]
    if len(modes) > 1:
        raise _UsageError("choose one of --list models, --list_versions, --publish, --promote "
                          "and --history")
    if not modes:
        raise _UsageError("nothing to do: pass --list models, --list_versions -m NAME, "
                          "-m NAME -v VERSION, -m NAME --alias ALIAS, --publish PATH -m NAME "
                          "-v VERSION, --promote VERSION -m NAME, or --history -m NAME")
    mode = modes[0]
    if mode in _MODE_FLAGS and not args.model_name:
        raise _UsageError(f"{_MODE_FLAGS[mode]} needs -m/--model_name")
    if mode == "publish" and not args.version:
        raise _UsageError("--publish needs -m/--model_name and -v/--version")
    if mode == "download":
        _check_download_flags(args)
    return mode


def _check_download_flags(args: argparse.Namespace) -> None:
    if args.version and args.alias:
        raise _UsageError("choose -v/--version or --alias to download, not both")
    if not (args.version or args.alias):
        raise _UsageError("--version is mandatory to download; use --list_versions -m "
                          f"{args.model_name} to see the versions (or --alias production)")
    _check_dest_dir(Path(args.dir))


def _check_dest_dir(path: Path) -> None:
    """-d must be a folder or a path that can become one (no file at it or above it)."""
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                where = f"-d {path}" if folder == path else f"-d {path}: {folder}"
                raise _UsageError(f"{where} is a file, not a folder")
            return


def _registry_uri(flag: str | None) -> str:
    uri = flag or os.environ.get(REGISTRY_ENV)
    if not uri:
        raise RegistryError(f"no registry given: pass -r/--registry URI or set {REGISTRY_ENV}")
    return uri


def _print_models(registry: Registry) -> None:
    rows = [[m.name, "-", m.latest_version, m.application or "-", m.framework or "-",
             m.precision or "-", _when(m.last_modified)] for m in registry.list_models()]
    _print_table(["Name", "Org/Team", "Latest Version", "Application", "Framework", "Precision",
                  "Last Modified"], rows)


def _print_versions(registry: Registry, name: str) -> None:
    versions = registry.list_versions(name)
    named: dict[str, list[str]] = {}
    for alias, version in aliases(registry, name).items():
        named.setdefault(version, []).append(alias)
    rows = [[v.version, str(len(v.files)), _human_size(v.size), _when(v.created),
             ", ".join(named.get(v.version, [])) or "-"] for v in reversed(versions)]
    _print_table(["Version", "Files", "Size", "Last Modified", "Aliases"], rows)


def _print_history(registry: Registry, name: str, alias: str) -> None:
    records = history(registry, name, alias)
    if not records:
        print(f"{alias} alias of '{name}' has never been set in registry {registry.root}")
        return
    rows = [[str(r.seq), _when(r.when), r.who, r.from_version or "-", r.to_version,
             _metric_change(r.metric, r.from_metric, r.to_metric),
             "-" if r.margin is None else f"{r.margin:g}", r.reason] for r in records]
    _print_table(["#", "Promoted", "Who", "From", "To", "Metric", "Margin", "Reason"], rows)


def _metric_change(metric: str | None, old: float | None, new: float | None) -> str:
    if not metric or new is None:
        return "-"
    return f"{metric} {'-' if old is None else f'{old:.4g}'} -> {new:.4g}"


def _promote(registry: Registry, name: str, version: str, alias: str) -> None:
    before = current(registry, name, alias)
    record = promote(registry, name, version, alias=alias)
    if record == before:
        print(f"{name} version {version} already is {alias} in {registry.root}; nothing changed")
        return
    was = f"version {record.from_version}" if record.from_version else "unset"
    print(f"Promoted {name} version {version} to {alias} in {registry.root} (was {was})")


def _download(registry: Registry, name: str, version: str | None, alias: str | None,
              root: Path) -> None:
    if alias:
        version = resolve(registry, name, alias).version
        _LOG.info("%s alias of %s names version %s", alias, name, version)
    elif version == "latest":
        version = registry.latest_version(name)
    dest = (root / f"{name}_v{version}").absolute()
    started = _dt.datetime.now()
    t0 = time.monotonic()
    paths = registry.pull(name, version, dest, progress=sys.stderr.isatty())
    seconds = time.monotonic() - t0
    size = sum(p.stat().st_size for p in paths)
    print(f"Downloaded {_human_size(size)} in {seconds:.2f}s, "
          f"Download speed: {_human_size(size / max(seconds, 1e-6))}/s")
    print(_RULE)
    print(f"Transfer id: {name}_v{version} Download status: Completed.")
    print(f"Downloaded local path: {dest}")
    print(f"Total files downloaded: {len(paths)}")
    print(f"Total downloaded size: {_human_size(size)}")
    print(f"Started at: {started} Completed at: {_dt.datetime.now()}")
    print(f"Duration taken: {seconds:.2f}s")
    print(_RULE)
    print(f"Finished downloading {name}")


def _publish(registry: Registry, args: argparse.Namespace) -> None:
    info = registry.publish(args.model_name, args.version, args.publish, task=args.task,
                            description=args.description, precision=args.precision,
                            overwrite=args.overwrite, progress=sys.stderr.isatty())
    files = f"{len(info.files)} file" + ("s" if len(info.files) != 1 else "")
    print(f"Published {info.name} version {info.version} ({files}, "
          f"{_human_size(info.size)}) to {registry.root}")
    for f in info.files:
        print(f"  {f.path}  {_human_size(f.size)}  sha256:{f.sha256}")


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    for row in [headers, None, *rows]:
        if row is None:
            print(line)
            continue
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    print(line)


def _when(iso: str) -> str:
    """``2019-03-01T20:41:41+00:00`` -> ``2019-03-01 20:41:41 UTC`` (as NGC shows it)."""
    try:
        stamp = _dt.datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return iso or "-"
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(_dt.timezone.utc)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def _human_size(size: float) -> str:
    """Decimal units, as NGC prints them: 82.41 MB."""
    units = ("B", "KB", "MB", "GB", "TB")
    step = 0
    while size >= 1000 and step < len(units) - 1:
        size /= 1000
        step += 1
    return f"{size:.0f} B" if step == 0 else f"{size:.2f} {units[step]}"


if __name__ == "__main__":
    sys.exit(main())
