"""tools/demo_session.py: the README's real session, abridged from a `make demo` log and stamped by the tool
(no `make demo` here: a saved log, written below)."""
import importlib.util
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))  # the tool imports tools/stamp.py as a script does
_spec = importlib.util.spec_from_file_location("demo_session", ROOT / "tools" / "demo_session.py")
demo_session = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo_session)

R = "─" * 50
# A `make demo` log as it comes (stdout and stderr merged, trailing spaces and all), from the README's session
# with the noise the abridging drops: make's pip lines, pip and library warnings, absl lines, progress lines,
# earlier epochs, QAT output, the bench's notes, the step table and the report's table.
LOG = f"""\
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
WARNING: Location 'file:///opt/pypi/simple/torch/' is ignored: it is neither a file nor a directory.
.venv/bin/pip install -q --no-compile --find-links /opt/wheels -e ".[export,report]"
  /tmp/pip-build-env-x/overlay/lib/python3.11/site-packages/setuptools/command/editable_wheel.py:354: BuildBackendWarning: Editable installation.
touch .venv/.full .venv/.core
.venv/bin/edgecnn run recipes/quickstart.yaml --out runs/quickstart
{R} [1/9] train cnn_attn (5 epochs) {R}
training cnn_attn on cpu: 1500 train / 500 val images, 10 classes -> runs/quickstart
epoch   1/5  loss 1.203  train acc 57.5%  val acc 62.4%  val F1 58.1%  (11.5s)
epoch   4/5  loss 0.299  train acc 89.4%  val acc 92.0%  val F1 91.8%  (12.4s)
epoch   5/5  loss 0.206  train acc 92.4%  val acc 95.4%  val F1 95.4%  (12.4s)

runs/quickstart: val accuracy 95.4%, F1 95.4%, 0.113 GMACs, 1.229 M params -> runs/quickstart/eval.json
{R} [2/9] QAT for xnnpack (1 epochs) {R}
train setup: building the model (QAT: preparing the quantized graph) (5 s)
W1206 14:22:31.123456 1234 torch/_dynamo/utils.py:1234] some absl-style library log line
/work/x/.venv/lib/python3.11/site-packages/torch/ao/quantization/observer.py:1318: UserWarning: must run observer
  warnings.warn(
qat epoch   1/1  loss 0.184  train acc 93.0%  val acc 95.6% (fake-quantized)  val F1 95.6%  (19.2s)
{R} [3/9] QAT for openvino (1 epochs) {R}
INFO:nncf:Statistics collection
Statistics collection ━━━━━━━━━━━━━━━━━━━━━━━━━ 100% 256/256 • 0:00:07 • 0:00:00
{R} [4/9] export executorch fp32 from runs/quickstart {R}
export executorch fp32: lowering to XNNPACK (5 s)
{R} [5/9] export executorch int8 (QAT) from runs/quickstart/qat-xnnpack {R}
export executorch int8: parity: 250/500 validation images through the artifact and PyTorch (25 s)
cnn_attn-executorch-int8.pte: 1.27 MB, accuracy 95.6% through executorch, top-1 agreement 100.0% with PyTorch
{R} [6/9] export openvino fp32 from runs/quickstart {R}
{R} [7/9] export openvino int8 (QAT) from runs/quickstart/qat-openvino {R}
cnn_attn-openvino-int8.xml: 1.33 MB, accuracy 95.6% through openvino, top-1 agreement 99.8% with PyTorch
{R} [8/9] bench 4 artifacts on local {R}
bench: loading 1/5: cnn_attn-eager-fp32 (5 s)
bench: round 2 (at most 60), at most 6 s left (20 s)
  cnn_attn-eager-fp32       1 rounds, ± at the first look
  cnn_attn-openvino-int8    1 rounds, ± at the first look
bench: round 5 (at most 60), at most 1 s left (25 s)
  cnn_attn-eager-fp32       5 rounds, ± at the first look
  cnn_attn-openvino-int8    5 rounds, ± at the first look
                    latency on local: 2 threads, batch 1, 5 rounds of ≥0.25 s to ±3%                     
                                                                                                         
 name                            p50 ms  floor ms  p99 ms           x ref     GMAC/s  RSS MB  size MB    
 {"─" * 73}
 cnn_attn-eager-fp32         3.45 ±1.83      3.43    6.51    1.000 ±0.000   32.6 42%     439        -  ! 
 cnn_attn-executorch-fp32    3.43 ±0.31      3.35    5.53  0.994 ±0.541 ≈   32.8 42%     308     4.92  ! 
 cnn_attn-executorch-int8    1.36 ±0.13      1.33    2.44    0.395 ±0.216   82.5 53%     305     1.27  ! 
 cnn_attn-openvino-fp32      1.41 ±0.20      1.39    3.25    0.408 ±0.229  79.9 102%     148     4.96  ! 
 cnn_attn-openvino-int8    0.872 ±0.778     0.862    2.18    0.253 ±0.291  129.1 83%     142     1.33  ! 
                                                                                                         
p50: the median of every timed call ± its 95% interval (what this run saw); floor: the lower quartile
cnn_attn-eager-fp32: torch 2.13.0+cpu; PyTorch eager fp32, 2 threads, inference_mode
  warning: stopped by the time budget (35 s for the bench) after 5 rounds at ±43.9% (target ±3%)
{R} [9/9] report -> runs/quickstart/report {R}
          edgecnn run -> runs/quickstart           
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━┓
┃ step                         ┃ status ┃ seconds ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━┩
│ train                        │ done   │    66.8 │
│ qat xnnpack                  │ done   │    37.7 │
│ qat openvino                 │ done   │    35.7 │
│ export executorch fp32       │ done   │    18.0 │
│ export executorch int8 (QAT) │ done   │    29.3 │
│ export openvino fp32         │ done   │     7.6 │
│ export openvino int8 (QAT)   │ done   │    14.4 │
│ bench                        │ done   │    34.8 │
│ report                       │ done   │     1.5 │
│ total                        │        │   245.8 │
└──────────────────────────────┴────────┴─────────┘
 Model                            Role  Device           Acc      F1      p50 ms  floor    MB  vs ref 
 cnn_attn-eager-fp32              ref   local   95.40% ±2.21  95.40%  3.45 ±1.83   3.43     —   1.00× 
wrote runs/quickstart/report/report.html and 6 more files in runs/quickstart/report
"""

# What is left: the README's session as it was written by hand (the progress line's note aside; the sample
# has only the two INT8 export results, a real run has four).
ABRIDGED = """\
$ make demo
.venv/bin/edgecnn run recipes/quickstart.yaml --out runs/quickstart
──── [1/9] train cnn_attn (5 epochs) ────
epoch   5/5  loss 0.206  train acc 92.4%  val acc 95.4%  val F1 95.4%  (12.4s)
──── [2/9] QAT for xnnpack (1 epochs) ──── ... [7/9] export openvino int8 (QAT) ────
cnn_attn-executorch-int8.pte: 1.27 MB, accuracy 95.6% through executorch, top-1 agreement 100.0% with PyTorch
cnn_attn-openvino-int8.xml: 1.33 MB, accuracy 95.6% through openvino, top-1 agreement 99.8% with PyTorch
──── [8/9] bench 4 artifacts on local ────
bench: round 5 (at most 60), at most 1 s left (25 s)      <- progress on stderr, the last of 2
 name                            p50 ms  floor ms  p99 ms           x ref     GMAC/s  RSS MB  size MB
 cnn_attn-eager-fp32         3.45 ±1.83      3.43    6.51    1.000 ±0.000   32.6 42%     439        -  !
 cnn_attn-executorch-fp32    3.43 ±0.31      3.35    5.53  0.994 ±0.541 ≈   32.8 42%     308     4.92  !
 cnn_attn-executorch-int8    1.36 ±0.13      1.33    2.44    0.395 ±0.216   82.5 53%     305     1.27  !
 cnn_attn-openvino-fp32      1.41 ±0.20      1.39    3.25    0.408 ±0.229  79.9 102%     148     4.96  !
 cnn_attn-openvino-int8    0.872 ±0.778     0.862    2.18    0.253 ±0.291  129.1 83%     142     1.33  !
──── [9/9] report -> runs/quickstart/report ────
wrote runs/quickstart/report/report.html and 6 more files in runs/quickstart/report"""

README = """\
# edgecnn

text before\r\n with odd bytes: ±, tabs\t, no final newline after the end marker

## A real session

<!-- demo-session:start -->
an old session

```
$ make demo
```
<!-- demo-session:end -->

The demo's bench is short on purpose."""


def test_abridge_keeps_exactly_the_sessions_lines():
    assert demo_session.abridge(LOG.splitlines()) == ABRIDGED.splitlines()


def test_the_readme_has_the_markers():
    text = (ROOT / "README.md").read_text()
    assert demo_session.replace_block(text, "x").count("\nx\n") == 1


def test_timing_from_the_step_table():
    lines = LOG.splitlines()
    assert demo_session.step_seconds(lines)[:2] == [("train", 66.8), ("qat xnnpack", 37.7)]
    assert demo_session.timing(lines, 291.84) == ("4 min 52 s in all, install included (chain 246 s: train 67 s, "
                                                  "QAT 73 s, exports 69 s, bench 35 s, report 2 s; install and "
                                                  "start-up 46 s)")
    assert demo_session.timing(["no table"], 42) == "42 s in all, no install (it was done)"


def test_replace_block_keeps_the_rest_byte_for_byte():
    new = demo_session.replace_block(README, "stamp\n\n```\nabridged\n```\n")
    i, j = README.index(demo_session.START), README.index(demo_session.END)
    assert new == README[:i + len(demo_session.START)] + "\nstamp\n\n```\nabridged\n```\n" + README[j:]
    # the README's block written back as it is: the file is unchanged
    old = README[i + len(demo_session.START) + 1:j]
    assert demo_session.replace_block(README, old) == README


def _main(tmp_path, capsys, readme: str, log: str, *extra: str) -> tuple[int, str, str]:
    path, log_path = tmp_path / "README.md", tmp_path / "demo.log"
    path.write_bytes(readme.encode())
    path.chmod(0o640)
    log_path.write_text(log)
    rc = demo_session.main(["--log", str(log_path), "--seconds", "291.8", "--readme", str(path),
                            "--run", str(ROOT), *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def test_main_writes_the_block_between_the_markers(tmp_path, capsys):
    rc, out, err = _main(tmp_path, capsys, README, LOG)
    assert rc == 0, err
    text = (tmp_path / "README.md").read_bytes().decode()
    assert text.startswith(README[:README.index(demo_session.START)])
    assert text.endswith(README[README.index(demo_session.END):])
    assert "`make demo` from a fresh clone at commit " in text and "4 min 52 s in all, install included" in text
    assert "`python tools/demo_session.py`; abridged:" in text  # never wrapped inside a code span
    assert "```\n" + ABRIDGED + "\n```\n" + demo_session.END in text
    assert (tmp_path / "README.md").stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "demo.log"]  # no temporary file left


def test_dry_run_prints_and_leaves_the_readme(tmp_path, capsys):
    rc, out, _ = _main(tmp_path, capsys, README, LOG, "--dry-run")
    assert rc == 0 and ABRIDGED in out
    assert (tmp_path / "README.md").read_bytes() == README.encode()


@pytest.mark.parametrize("readme, log, says", [
    (README.replace(demo_session.END, ""), LOG, "demo-session:start"),  # a marker missing
    (README, LOG.split(" name ")[0], "no bench table"),                  # the run stopped before the bench
])
def test_problems_are_one_line_and_exit_2(tmp_path, capsys, readme, log, says):
    rc, out, err = _main(tmp_path, capsys, readme, log)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and says in err
    assert (tmp_path / "README.md").read_bytes() == readme.encode()


@pytest.mark.parametrize("ok", [True, False])
def test_run_times_make_demo_and_stops_on_its_failure(tmp_path, capsys, ok):
    """--run: `make demo` in the folder (a stand-in Makefile that prints the log, or fails), timed by the tool."""
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "demo.log").write_text(LOG)
    (clone / "Makefile").write_text("demo:\n\t@cat demo.log\n" if ok else "demo:\n\t@echo broken; exit 3\n")
    path = tmp_path / "README.md"
    path.write_bytes(README.encode())
    rc = demo_session.main(["--run", str(clone), "--readme", str(path)])
    out, err = capsys.readouterr()
    if ok:
        assert rc == 0, err
        assert "\n" + ABRIDGED + "\n" in path.read_text() and " at commit unknown " in path.read_text()
    else:
        assert rc == 2 and path.read_bytes() == README.encode()
        assert err.count("\n") == 1 and "`make demo` failed" in err and "(exit 2)" in err  # make says 2 whatever the recipe said


def test_a_run_notes_its_longest_silence(tmp_path, monkeypatch):
    """run_demo times the stretches between lines as they arrive: a real `make demo` (a Makefile of ours) that
    says one line, is silent a second, then says another."""
    for var in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):  # under `make test` the inner make would add its own lines
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "Makefile").write_text("demo:\n\t@echo first\n\t@sleep 1.2\n\t@echo second\n")
    lines, seconds, silence = demo_session.run_demo(tmp_path)
    assert [line.strip() for line in lines] == ["first", "second"]
    assert 1.2 <= silence.seconds <= seconds and silence.after == "first"
    assert "at most 1 s without output (after `first`)" in demo_session.quiet(silence)
    assert demo_session.quiet(None) == ""  # a saved log has no times: nothing claimed
