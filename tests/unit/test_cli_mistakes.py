"""A user's mistake on the `btcpred` command line is one line on stderr and a non-zero exit.

Each test runs the real command, in process through ``main`` (so a traceback would surface as an
uncaught exception) or, for the benches (they pin the process to one CPU) and for what must not
hang, as a subprocess with a deadline. Replay and train mistakes are also checked to be found
before the long work: no "loaded ..." line (the capture was not read), no progress line.
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from btcpred import cli
from btcpred.cli import main

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "binance"
KLINES = FIXTURES / "btcusdt_1m_2024-08-08T18_2024-08-09T0010.csv.gz"
CAPTURE = FIXTURES / "btcusdt_ws_capture_2024-08-08.gz"
MODEL = ROOT / "models" / "btcpred-mlp" / "1.0.0"
HEADER = "open_time_ms,open,high,low,close,volume\n"


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    """Run ``btcpred argv`` in process; assert a one-line refusal; return (line, stdout)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code != 0
    assert "Traceback" not in captured.err
    assert len(captured.err.splitlines()) == 1, captured.err
    line = captured.err.strip()
    assert line.startswith("btcpred: error: ")
    return line, captured.out


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "btcpred.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,  # the checks take about a second; a hang fails here
        check=False,
        env=env,
    )


def _refused_by_subprocess(*argv: str, env: dict[str, str] | None = None) -> str:
    done = _run(*argv, env=env)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("btcpred: error: ")
    return done.stderr.strip()


@pytest.fixture
def cut_short_klines(tmp_path: Path) -> Path:
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(KLINES.read_bytes()[:5_000])
    return path


@pytest.fixture
def cut_short_capture(tmp_path: Path) -> Path:
    path = tmp_path / "cut_capture.gz"
    with CAPTURE.open("rb") as src:
        path.write_bytes(src.read(20_000))
    return path


@pytest.fixture
def not_gzip(tmp_path: Path) -> Path:
    path = tmp_path / "plain.gz"
    path.write_text(HEADER + "1723161600000,1,2,0.5,1.5,3\n")
    return path


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("not a directory\n")
    return path


# --- truncated and non-gzip inputs -------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["features", "--klines", "{klines}"],
        ["replay", "--speed", "0", "--no-model", "--klines", "{klines}"],
        ["replay", "--speed", "0", "--no-features", "--capture", "{capture}"],
        ["train", "--klines", "{klines}", "--out", "{out}"],
        ["train", "--capture", "{capture}", "--out", "{out}"],
        ["evaluate", "--klines", "{klines}", "--model", str(MODEL)],
    ],
    ids=["features", "replay-klines", "replay-capture", "train-klines", "train-capture", "eval"],
)
def test_a_cut_short_gzip_file_is_one_line(
    command: list[str],
    cut_short_klines: Path,
    cut_short_capture: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = {"klines": cut_short_klines, "capture": cut_short_capture, "out": tmp_path / "m"}
    argv = [part.format(**names) for part in command]

    line, stdout = _refused(capsys, *argv)

    assert "cut" in line
    assert "gzip" in line
    assert "loaded" not in stdout
    assert not (tmp_path / "m").exists()


def test_bench_sbe_on_a_cut_short_capture_is_one_line(cut_short_capture: Path) -> None:
    line = _refused_by_subprocess("bench", "sbe", "--capture", str(cut_short_capture))

    assert str(cut_short_capture) in line
    assert "gzip" in line


@pytest.mark.parametrize("option", ["--klines", "--capture"])
def test_a_gz_file_that_is_not_gzip_is_one_line(
    option: str, not_gzip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line, _ = _refused(capsys, "train", option, str(not_gzip), "--out", str(tmp_path / "m"))

    assert f"{not_gzip}: cannot read it as gzip" in line


# --- empty and header-only inputs --------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", HEADER.encode(), gzip.compress(HEADER.encode())],
    ids=["empty", "header", "header-gz"],
)
def test_features_of_an_empty_or_header_only_klines_file_is_an_error(
    content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / ("k.csv.gz" if content.startswith(b"\x1f\x8b") else "k.csv")
    path.write_bytes(content)

    line, stdout = _refused(capsys, "features", "--klines", str(path))

    assert f"{path}: no klines" in line
    assert stdout == ""


@pytest.mark.parametrize("command", ["replay", "train", "evaluate"])
def test_a_header_only_klines_file_is_refused_before_the_work(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "header.csv"
    path.write_text(HEADER)
    extra = {
        "replay": ["--no-model"],
        "train": ["--out", str(tmp_path / "m")],
        "evaluate": ["--model", str(MODEL)],
    }[command]

    line, stdout = _refused(capsys, command, "--klines", str(path), *extra)

    assert f"{path}: no klines" in line
    assert "loaded" not in stdout


def test_train_on_an_empty_capture_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.gz"
    empty.write_bytes(gzip.compress(b""))

    line, _ = _refused(capsys, "train", "--capture", str(empty), "--out", str(tmp_path / "m"))

    assert f"no market messages in {empty.name}" in line


def test_replay_with_a_missing_klines_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.csv"

    line, stdout = _refused(capsys, "replay", "--speed", "0", "--klines", str(missing))

    assert line == f"btcpred: error: klines file not found: {missing}"
    assert stdout == ""


def test_a_directory_given_as_an_input_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line, _ = _refused(capsys, "replay", "--no-features", "--capture", str(tmp_path))

    assert line == f"btcpred: error: capture file is not a file: {tmp_path}"


# --- output paths ------------------------------------------------------------------------------


def test_features_output_in_a_missing_directory_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "no_such_dir" / "f.csv"

    line, _ = _refused(capsys, "features", "--klines", str(KLINES), "--output", str(out))

    assert f"directory {out.parent} does not exist" in line


def test_features_output_that_is_a_directory_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line, _ = _refused(capsys, "features", "--klines", str(KLINES), "--output", str(tmp_path))

    assert f"--output {tmp_path} is a directory" in line


def test_a_failed_features_run_leaves_the_output_file_as_it_was(
    cut_short_klines: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "features.csv"
    out.write_text("earlier results\n")
    argv = ["features", "--klines", str(KLINES), "--klines", str(cut_short_klines)]

    line, _ = _refused(capsys, *argv, "--output", str(out))

    assert "gzip" in line
    assert out.read_text() == "earlier results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.csv.gz", "features.csv"]


@pytest.mark.parametrize("existing", ["directory", "file"])
def test_train_refuses_an_existing_out_before_training(
    existing: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    if existing == "directory":
        shutil.copytree(MODEL, out)
    else:
        out.write_text("keep me\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()} if out.is_dir() else out.read_bytes()

    line, _ = _refused(capsys, "train", "--klines", str(KLINES), "--out", str(out))

    assert f"--out {out} already exists (a {existing})" in line
    after = {p.name: p.read_bytes() for p in out.iterdir()} if out.is_dir() else out.read_bytes()
    assert after == before


def test_train_out_in_a_missing_directory_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "no_such_dir" / "model"

    line, _ = _refused(capsys, "train", "--klines", str(KLINES), "--out", str(out))

    assert f"directory {out.parent} does not exist" in line
    assert not out.parent.exists()


@pytest.mark.parametrize("where", ["file", "missing parent"])
def test_evaluate_report_must_be_a_directory_that_can_be_made(
    where: str, a_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = a_file if where == "file" else tmp_path / "no_such_dir" / "report"
    argv = ["evaluate", "--klines", str(KLINES), "--model", str(MODEL), "--report", str(report)]

    line, stdout = _refused(capsys, *argv)

    assert f"--report {report}" in line
    assert stdout == ""  # refused before the evaluation
    assert not (tmp_path / "no_such_dir").exists()


# --- model and registry locations --------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["replay", "--speed", "0", "--model", "{path}"],
        ["evaluate", "--klines", str(KLINES), "--model", "{path}"],
    ],
    ids=["replay", "evaluate"],
)
def test_a_model_path_that_is_a_file_is_an_error(
    command: list[str], a_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line, stdout = _refused(capsys, *[part.format(path=a_file) for part in command])

    assert f"model {a_file} is not a directory" in line
    assert "loaded" not in stdout


@pytest.mark.parametrize("bench", ["model", "inference"])
def test_bench_with_a_model_path_that_is_a_file_is_an_error(bench: str, a_file: Path) -> None:
    line = _refused_by_subprocess("bench", bench, "--model", str(a_file))

    assert f"model {a_file} is not a directory" in line


def test_a_model_path_that_does_not_exist_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"

    line, _ = _refused(capsys, "evaluate", "--klines", str(KLINES), "--model", str(missing))

    assert f"model {missing} does not exist" in line


def test_publishing_a_file_as_a_model_directory_is_an_error(
    a_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["model", "publish", str(a_file), "--registry", str(tmp_path / "r")]

    line, _ = _refused(capsys, *argv)

    assert f"model directory {a_file} is not a directory" in line
    assert not (tmp_path / "r").exists()


def test_publishing_into_a_registry_that_is_a_file_is_an_error(
    a_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line, _ = _refused(capsys, "model", "publish", str(MODEL), "--registry", str(a_file))

    assert f"registry {a_file} is a file" in line


@pytest.mark.parametrize("where", ["file", "missing"])
def test_listing_a_registry_that_is_not_a_directory_is_an_error(
    where: str, a_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = a_file if where == "file" else tmp_path / "nope"

    line, stdout = _refused(capsys, "model", "list", "--registry", str(registry))

    assert f"registry {registry}" in line
    assert stdout == ""


def test_listing_an_empty_registry_directory_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["model", "list", "--registry", str(tmp_path)]) == 0

    assert capsys.readouterr().out == f"no models in {tmp_path}\n"


# --- S3 without credentials or without an endpoint ---------------------------------------------


def _aws_env(tmp_path: Path, *, credentials: bool) -> dict[str, str]:
    """This environment without any AWS credentials source, S3 pointed at a closed port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no_credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "no_config"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{_closed_port()}",
        AWS_DEFAULT_REGION="us-east-1",
    )
    if credentials:
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")  # noqa: S106 - fake
    return env


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    "command",
    [
        ["model", "list", "--registry", "s3://bucket/models"],
        ["model", "publish", str(MODEL), "--registry", "s3://bucket/models"],
        ["evaluate", "--klines", str(KLINES), "--model", "s3://bucket/models"],
        ["replay", "--speed", "0", "--model", "s3://bucket/models"],
    ],
    ids=["list", "publish", "evaluate", "replay"],
)
def test_s3_without_credentials_fails_fast_in_one_line(command: list[str], tmp_path: Path) -> None:
    line = _refused_by_subprocess(*command, env=_aws_env(tmp_path, credentials=False))

    assert "s3://bucket/models: no AWS credentials found" in line


def test_s3_with_an_unreachable_endpoint_is_one_line(tmp_path: Path) -> None:
    env = _aws_env(tmp_path, credentials=True)

    line = _refused_by_subprocess("model", "list", "--registry", "s3://bucket/models", env=env)

    assert "Could not connect to the endpoint URL" in line


# --- --redis-url -------------------------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a Redis that hangs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("bench", ["aggregator", "inference"])
@pytest.mark.parametrize("kind", ["malformed", "refused", "silent"])
def test_a_bad_redis_url_fails_fast_in_one_line(bench: str, kind: str, silent_server: str) -> None:
    url = {
        "malformed": "localhost:6379",
        "refused": f"redis://127.0.0.1:{_closed_port()}",
        "silent": silent_server,
    }[kind]

    line = _refused_by_subprocess("bench", bench, "--redis-url", url)

    assert line.startswith(f"btcpred: error: --redis-url {url}: ")


# --- the mapping keeps bugs visible ------------------------------------------------------------


def test_a_bug_is_not_turned_into_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_args: object) -> int:
        raise TypeError("a bug")

    monkeypatch.setattr(cli, "_cmd_features", broken)

    with pytest.raises(TypeError, match="a bug"):
        main(["features", "--klines", str(KLINES)])


def test_every_mapped_error_type_exists() -> None:
    # A renamed class would make the error path itself raise AttributeError.
    import importlib

    from btcpred.cli_checks import _USER_ERRORS, user_error_types

    for module_name, _ in _USER_ERRORS:
        importlib.import_module(module_name)

    types = user_error_types()

    assert len(types) == 1 + len(_USER_ERRORS)
    assert all(issubclass(t, Exception) for t in types)
