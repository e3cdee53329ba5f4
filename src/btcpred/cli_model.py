"""``btcpred train``, ``btcpred evaluate`` and ``btcpred model publish|list`` (an edge module).

Model locations (``--model``, ``--registry``): a model version directory (holding
``metadata.json``), a registry root (``./models``, ``s3://bucket/models``; the current version of
``--name`` is used) or a model's directory inside one (holding ``current.json``).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from btcpred.cli_checks import (
    CliError,
    input_directory,
    input_file,
    klines_inputs,
    new_directory,
    output_directory,
)

if TYPE_CHECKING:
    from btcpred.klines import Kline
    from btcpred.model.dataset import Dataset
    from btcpred.model.metadata import Evaluation
    from btcpred.model.registry import ModelRegistry
    from btcpred.model.runtime import OnnxModel

DEFAULT_MODEL_NAME = "btcpred-mlp"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def default_registry() -> str:
    """``./models`` when it exists, else the source checkout's ``models``."""
    for base in (Path.cwd(), _REPO_ROOT):
        if (base / "models").is_dir():
            return str(base / "models")
    return "models"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _s3_client(uri: str) -> Any:
    """An S3 client with short timeouts and few retries, once credentials are known to exist
    (without them every call fails only after botocore's whole search for them)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise CliError(f"{uri}: an S3 registry needs boto3: pip install -e '.[aws]'") from None
    session = boto3.Session()
    if session.get_credentials() is None:
        raise CliError(
            f"{uri}: no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY)"
        )
    config = Config(
        connect_timeout=3, read_timeout=20, retries={"max_attempts": 2, "mode": "standard"}
    )
    return session.client("s3", config=config)


def _local_registry(uri: str) -> Path | None:
    """The directory of a local registry URI (``DIR`` or ``file://DIR``), None for others."""
    if "://" in uri and not uri.startswith("file://"):
        return None
    return Path(uri.removeprefix("file://"))


def open_registry_uri(uri: str, *, create: bool = False) -> ModelRegistry:
    """A registry for a URI, checked: a local one must be a directory (or, with ``create``, be
    creatable); S3 needs boto3 (``pip install -e '.[aws]'``) and AWS credentials."""
    from btcpred.model.registry import open_registry

    local = _local_registry(uri)
    if local is not None and create:
        output_directory(local, "registry")
    elif local is not None:
        input_directory(local, "registry")
    return open_registry(uri, _s3_client(uri) if uri.startswith("s3://") else None)


def open_model(location: str, name: str = DEFAULT_MODEL_NAME) -> OnnxModel:
    """Load a model from any of the locations in the module docstring."""
    from btcpred.model.metadata import METADATA_FILE
    from btcpred.model.registry import CURRENT_FILE
    from btcpred.model.runtime import OnnxModel

    path = _local_registry(location)
    if path is not None:
        input_directory(path, "model", "; give a model directory or a registry")
    if path is not None and (path / METADATA_FILE).is_file():
        return OnnxModel.load(path)
    if path is not None and (path / CURRENT_FILE).is_file():
        return open_registry_uri(str(path.parent)).load(path.name)
    return open_registry_uri(location).load(name)


def _klines(paths: Sequence[Path]) -> list[Kline]:
    from btcpred.klines import read_klines

    return [kline for path in paths for kline in read_klines(path)]


def _database_klines(args: argparse.Namespace) -> list[Kline]:
    """The ``kline_1m`` rows of ``market_data`` for ``--symbol`` in ``[--from, --to)``."""
    import psycopg2

    from btcpred.history.backfill import parse_time
    from btcpred.history.database import read_klines

    try:
        start, end = parse_time(args.start), parse_time(args.end)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        conn = psycopg2.connect(args.database)
    except psycopg2.OperationalError as exc:
        raise CliError(f"--database: cannot connect: {str(exc).strip()}") from None
    try:
        _say(f"features: reading {args.symbol} klines from market_data")
        klines = list(read_klines(conn, args.symbol, start, end))
    finally:
        conn.close()
    if not klines:
        raise CliError(f"market_data holds no {args.symbol} kline_1m rows in that period")
    _say(f"features: running {len(klines):,} bars through the feature engine")
    return klines


def _check_sources(args: argparse.Namespace) -> None:
    """``--klines`` / ``--capture`` files exist (klines: and hold klines), before the work."""
    if getattr(args, "database", None):
        if not (args.start and args.end):
            raise CliError("--database needs --from and --to (the period to read)")
    elif args.klines:
        klines_inputs(args.klines)
    else:
        for path in args.capture:
            input_file(path, "capture file")


def _dataset(args: argparse.Namespace, window: int, masked: Sequence[str] | None) -> Dataset:
    from btcpred.model.dataset import dataset_from_events, dataset_from_klines

    if getattr(args, "database", None):
        klines = _database_klines(args)
        return dataset_from_klines(
            klines,
            source=f"1-minute klines: market_data {args.symbol} {args.start} .. {args.end}",
            symbol=args.symbol,
            window=window,
            masked=masked,
        )
    names = ", ".join(p.name for p in (args.klines or args.capture))
    if args.klines:
        klines = _klines(args.klines)
        _say(f"features: running {names} through the feature engine")
        return dataset_from_klines(
            klines,
            source=f"1-minute klines: {names}",
            symbol=args.symbol,
            window=window,
            masked=masked,
        )
    from btcpred.sources.capture import load_capture

    capture = load_capture(list(args.capture))
    if not capture.events:
        raise CliError(f"no market messages in {names}; is it a capture file?")
    return dataset_from_events(
        capture.events,
        source=f"recorded stream: {names}",
        symbol=args.symbol,
        window=window,
        masked=masked,
    )


def _metrics_lines(label: str, ev: Evaluation) -> list[str]:
    return [
        f"{label}: n {ev.n:,}  model MAE {ev.model_mae:.3f}  random walk {ev.naive_mae:.3f}  "
        f"ratio {ev.mae_ratio:.5f}  linear {ev.linear_mae:.3f}  "
        f"direction {ev.direction_accuracy:.4f}  "
        f"spearman(conf, |err|) {ev.calibration_spearman:+.4f}"
    ]


def cmd_train(args: argparse.Namespace) -> int:
    """``btcpred train``."""
    _check_sources(args)
    new_directory(args.out, "--out")  # checked again by write_model, after the training
    try:
        from btcpred.model.train import TrainConfig, train, write_model
    except ImportError as exc:
        raise CliError(
            f"training needs the train extra ({exc.name} is missing): pip install -e '.[train]'"
        ) from None
    window = 5 if args.architecture == "sequence" else 1
    data = _dataset(args, window, None)
    _say(f"dataset: {len(data):,} samples; dropped {data.drops}")
    config = TrainConfig(
        name=args.name, version=args.version, seed=args.seed, max_epochs=args.max_epochs
    )
    trained = train(data, config, progress=_say)
    out = write_model(trained, new_directory(args.out, "--out"))
    for label, ev in trained.metadata.metrics.items():
        print(*_metrics_lines(label, ev))
    print(
        f"wrote {out}/model.onnx ({len(trained.onnx):,} bytes) and metadata.json "
        f"({trained.metadata.name} {trained.metadata.version})"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``btcpred evaluate``."""
    from btcpred.model.evaluate import evaluate

    _check_sources(args)
    if args.report is not None:  # checked before the evaluation, which can take a while
        output_directory(args.report, "--report")
        if importlib.util.find_spec("matplotlib") is None:
            raise CliError("--report needs matplotlib: pip install -e '.[train]'")
    model = open_model(args.model, args.name)
    meta = model.metadata
    data = _dataset(args, meta.window, meta.masked_features)
    if args.split != "all":
        part = meta.training.test if args.split == "test" else meta.training.validation
        keep = (data.timestamps >= part.first_ms) & (data.timestamps <= part.last_ms)
        data = data.take(keep.nonzero()[0])
    if len(data) == 0:
        raise CliError("no samples to evaluate (is this the model's data?)")
    scored = evaluate(model, data)
    ev = scored.evaluation
    if args.json:
        print(orjson.dumps({f: getattr(ev, f) for f in ev.__struct_fields__}).decode())
    else:
        print(*_metrics_lines(f"{model.version} on {args.split}", ev))
        print(f"verdict: the model {scored.verdict()}")
    if args.report is not None:
        from btcpred.model.report import write_report

        for path in write_report(scored, meta, args.report, data.source):
            _say(f"report: wrote {path}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """``btcpred model publish``."""
    from btcpred.model.metadata import METADATA_FILE, MODEL_FILE

    input_directory(args.directory, "model directory")
    for name in (METADATA_FILE, MODEL_FILE):
        if not (args.directory / name).is_file():
            raise CliError(f"not a model directory: {args.directory / name} is missing")
    registry = open_registry_uri(args.registry, create=True)
    pointer = registry.publish(args.directory, make_current=not args.no_current)
    where = f"{registry!r}/{pointer.name}/{pointer.version}"
    print(f"published {where}" + ("" if args.no_current else " (now current)"))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """``btcpred model list``."""
    registry = open_registry_uri(args.registry)
    models = registry.models()
    rows: list[dict[str, Any]] = []
    for m in models:
        test = m.metadata.metrics.get("test")
        rows.append(
            {
                "name": m.name,
                "version": m.version,
                "current": m.current,
                "created_at": m.metadata.created_at,
                "kind": m.metadata.architecture.kind,
                "test_mae_ratio": None if test is None else test.mae_ratio,
            }
        )
    if args.json:
        print(orjson.dumps(rows).decode())
        return 0
    if not rows:
        print(f"no models in {registry!r}")
    for row in rows:
        ratio = "-" if row["test_mae_ratio"] is None else f"{row['test_mae_ratio']:.5f}"
        print(
            f"{'*' if row['current'] else ' '} {row['name']}/{row['version']}  "
            f"{row['kind']}  created {row['created_at']}  test MAE ratio {ratio}"
        )
    return 0


def _sources(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(
        "--klines",
        type=Path,
        action="append",
        help="1-minute kline CSV, 6- or 12-column, .gz or plain (repeatable)",
    )
    group.add_argument(
        "--capture",
        type=Path,
        action="append",
        help="recorded stream capture (repeatable); one sample per second",
    )
    group.add_argument(
        "--database",
        help="postgresql:// URL: the kline_1m rows of market_data (with --from, --to)",
    )
    parser.add_argument("--from", dest="start", help="with --database: start, UTC (2025-05-20)")
    parser.add_argument("--to", dest="end", help="with --database: end (exclusive), UTC")
    parser.add_argument("--symbol", default="BTCUSDT", help="symbol name (default BTCUSDT)")


def add_parsers(sub: Any, positive: Any) -> None:
    """Register ``train``, ``evaluate`` and ``model`` on the main parser's subparsers."""
    train = sub.add_parser("train", help="train a model on history and export it to ONNX")
    _sources(train, required=True)
    train.add_argument("--out", type=Path, required=True, help="directory for the model files")
    train.add_argument(
        "--architecture",
        choices=["mlp", "sequence"],
        default="mlp",
        help="mlp: one feature point; sequence: the last 5 (60 s apart)",
    )
    train.add_argument("--name", default=DEFAULT_MODEL_NAME, help="model name")
    train.add_argument("--version", help="model version (default: UTC time of the run)")
    train.add_argument("--seed", type=positive, default=20250818, help="random seed")
    train.add_argument("--max-epochs", type=positive, default=40, help="epoch limit")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="score a model against the random walk")
    _sources(ev, required=True)
    ev.add_argument(
        "--model", required=True, help="model directory, registry directory or s3:// registry URI"
    )
    ev.add_argument("--name", default=DEFAULT_MODEL_NAME, help="model name in a registry")
    ev.add_argument(
        "--split",
        choices=["all", "validation", "test"],
        default="all",
        help="only the samples inside the model's validation/test period",
    )
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--report", type=Path, help="write PNG plots and summary.md here")
    ev.set_defaults(func=cmd_evaluate)

    model = sub.add_parser("model", help="publish and list models in a registry")
    msub = model.add_subparsers(dest="model_command", required=True)
    pub = msub.add_parser("publish", help="upload a model directory to a registry")
    pub.add_argument("directory", type=Path, help="holds model.onnx and metadata.json")
    pub.add_argument("--registry", default=default_registry(), help="directory or s3:// URI")
    pub.add_argument("--no-current", action="store_true", help="do not move current.json")
    pub.set_defaults(func=cmd_publish)
    lst = msub.add_parser("list", help="list the models in a registry")
    lst.add_argument("--registry", default=default_registry(), help="directory or s3:// URI")
    lst.add_argument("--json", action="store_true", help="print a JSON array")
    lst.set_defaults(func=cmd_list)
