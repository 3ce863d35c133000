"""The CLIs' last resort (one line for an unexpected error, the traceback with -v) and quiet start-up."""

import argparse
import logging
import os
import subprocess
import sys

import pytest
from PIL import Image

from cli_processes import VENV_BIN
from tlt.cli import _common, _quiet
from tlt.errors import DataError, Interrupted

HINT = "(rerun with -v for the traceback)"


@pytest.fixture(autouse=True)
def _clean_state(monkeypatch):
    """No TLT_VERBOSE; afterwards the root logger's handlers (setup_logging replaces them) and the
    quiet-import measures are back as they were, so later tests do not log to a closed stream."""
    monkeypatch.delenv("TLT_VERBOSE", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    _quiet.restore()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def _run(main, argv, capsys):
    code = _common.run_main("prog", main, argv)
    captured = capsys.readouterr()
    return code, captured.err


def _raise(exc):
    def main(argv):
        raise exc
    return main


def test_unexpected_error_is_one_line_with_the_hint(capsys):
    code, err = _run(_raise(ValueError("bad value\n  on two lines")), [], capsys)
    assert code == 1
    assert err.splitlines() == [f"prog: error: unexpected ValueError: bad value on two lines {HINT}"]


def test_unexpected_error_without_a_message(capsys):
    code, err = _run(_raise(MemoryError()), [], capsys)
    assert (code, err.splitlines()) == (1, [f"prog: error: unexpected MemoryError {HINT}"])


@pytest.mark.parametrize("argv", [["-v"], ["detection", "--verbose"], ["--verbosity"]])
def test_verbose_flag_shows_the_traceback(argv, capsys):
    code, err = _run(_raise(KeyError("frames")), argv, capsys)
    lines = err.splitlines()
    assert code == 1
    assert lines[0] == "Traceback (most recent call last):"
    assert "raise exc" in err
    assert lines[-1] == "prog: error: unexpected KeyError: 'frames'"


def test_tlt_verbose_environment_shows_the_traceback(monkeypatch, capsys):
    monkeypatch.setenv("TLT_VERBOSE", "1")
    code, err = _run(_raise(RuntimeError("boom")), [], capsys)
    assert code == 1 and err.startswith("Traceback (most recent call last):")


def test_parsed_flag_recorded_by_setup_logging_wins_over_argv(capsys):
    """tlt-pull's -v is --version: once setup_logging(False) ran, no traceback."""
    def main(argv):
        _common.setup_logging(False)
        raise OSError("disk full")
    code, err = _run(main, ["-v", "1"], capsys)
    assert (code, err.splitlines()) == (1, [f"prog: error: unexpected OSError: disk full {HINT}"])

    def verbose_main(argv):
        _common.setup_logging(True)  # e.g. parsed from an alias the argv guess does not know
        raise OSError("disk full")
    code, err = _run(verbose_main, ["--detail"], capsys)
    assert code == 1 and "Traceback (most recent call last):" in err


def test_typed_errors_interrupt_and_usage_exit_are_unchanged(capsys):
    assert _run(_raise(DataError("x.png: not an image")), [], capsys) == \
        (1, "prog: error: x.png: not an image\n")
    code, err = _run(_raise(Interrupted("stopped by SIGTERM")), [], capsys)
    assert (code, err) == (143, "prog: error: stopped by SIGTERM\n")
    assert _run(_raise(KeyboardInterrupt()), [], capsys) == (130, "prog: interrupted\n")
    with pytest.raises(SystemExit):  # argparse's -h and usage errors keep their own exit
        _common.run_main("prog", _raise(SystemExit(2)), [])


def test_check_count():
    _common.check_count("--top_k", 1)
    _common.check_count("--top_k", None)
    with pytest.raises(DataError, match=r"^--top_k must be >= 1, got 0$"):
        _common.check_count("--top_k", 0)


def test_help_formatter_shows_values_not_none_or_switches():
    parser = argparse.ArgumentParser(prog="p", formatter_class=_common.HelpFormatter)
    parser.add_argument("-b", type=int, default=4, help="batch")
    parser.add_argument("-k", default=None, help="key (default: $TLT_KEY)")
    parser.add_argument("-m", default=None, help="model")
    parser.add_argument("-x", action="store_true", help="switch")
    text = " ".join(parser.format_help().split())
    assert "batch (default: 4)" in text
    assert "key (default: $TLT_KEY) " in text + " " and "(default: None)" not in text
    assert "(default: False)" not in text


def test_setup_logging_quiets_python_loggers_of_tensorflow_and_absl():
    _common.setup_logging(False)
    assert logging.getLogger("absl").getEffectiveLevel() == logging.ERROR
    assert logging.getLogger("tensorflow").getEffectiveLevel() == logging.ERROR
    _common.setup_logging(True)
    assert logging.getLogger("absl").getEffectiveLevel() == logging.DEBUG


# -- native start-up noise -----------------------------------------------------------------------

NOISE_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795858622.344844    6783 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.",
    "I0000 00:00:1795858622.704558    6783 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with "
    "the appropriate compiler flags.",
    "E0000 00:00:1795858638.468074    7076 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not "
    "find cuda drivers on your machine, GPU will not be used.",
]


def test_noise_lines_are_recognised_and_real_errors_are_not():
    assert all(_quiet.is_noise(line) for line in NOISE_LINES)
    for line in ("E0000 00:00:1795858638.468074 7076 op_kernel.cc:1] OOM when allocating tensor",
                 "Traceback (most recent call last):", "ImportError: libfoo.so: cannot open"):
        assert not _quiet.is_noise(line)


def test_filtered_stderr_drops_native_noise_and_replays_the_rest(capfd):
    with _quiet.filtered_stderr():
        os.write(2, ("\n".join(NOISE_LINES[:3]) + "\nreal problem from C++\n").encode())
        os.write(2, ("\n".join(NOISE_LINES[3:]) + "\nan ImportError traceback\n").encode())
    assert capfd.readouterr().err == "real problem from C++\nan ImportError traceback\n"


def test_quiet_tensorflow_sets_the_log_level_only_when_unset(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    _quiet.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert any(isinstance(f, _quiet._QuietTensorFlowFinder) for f in sys.meta_path)
    _quiet.restore()
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    assert not any(isinstance(f, _quiet._QuietTensorFlowFinder) for f in sys.meta_path)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user's choice stays
    _quiet.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def _tlt_infer_importing_tensorflow(tmp_path, *extra):
    """A real ``tlt-infer`` whose -g imports TensorFlow and queries the GPUs, then fails on -m."""
    image = tmp_path / "img.png"
    Image.new("RGB", (32, 16)).save(image)
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES", "TLT_VERBOSE")}
    return subprocess.run([str(VENV_BIN / "tlt-infer"), "detection", "-m", str(tmp_path / "absent.tlt"),
                           "-i", str(image), "-o", str(tmp_path / "out"), "-k", "-g", "0", *extra],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cpu_only_start_up_prints_no_cuda_or_absl_noise(tmp_path):
    done = _tlt_infer_importing_tensorflow(tmp_path)
    assert done.returncode == 1
    for word in ("cuda", "cuInit", "cudart_stub", "cpu_feature_guard", "absl", "I0000", "E0000"):
        assert word not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == f"tlt-infer: error: {tmp_path / 'absent.tlt'}: no such model file"


@pytest.mark.slow
def test_verbose_start_up_keeps_tensorflows_native_log(tmp_path):
    """Control for the test above: on a machine without CUDA the noise is real, and -v shows it."""
    done = _tlt_infer_importing_tensorflow(tmp_path, "-v")
    assert done.returncode == 1
    if os.path.exists("/dev/nvidia0"):
        pytest.skip("a GPU machine prints no 'missing CUDA' lines")
    assert "cudart_stub" in done.stderr or "cuInit" in done.stderr, done.stderr


def test_closed_output_pipe_stops_quietly():
    """`tlt-pipeline list | head -1`: the reader closes the pipe; no traceback, no error line."""
    script = ("import sys\nfrom tlt.cli import _common\n"
              "def main(argv):\n    for i in range(200000):\n        print('line', i)\n"
              "sys.exit(_common.run_main('prog', main, []))\n")
    proc = subprocess.run(f"'{sys.executable}' -c \"{script}\" | head -1", shell=True,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout == "line 0\n"
    assert proc.stderr == ""
