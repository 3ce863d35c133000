#!/usr/bin/env bash
# TLT Pipelines build entry point. Usage: ./build.sh <command> [args]
#
#   setup     create .venv and install the pinned dependencies and the package (idempotent)
#   test      setup if needed, then run the test suite (extra args go to pytest; --all, or CI=true,
#             adds the slow tests)
#   demo      setup if needed, make the bundled sample data and run the detection pipeline locally;
#             'demo retraining' runs the scheduled retraining pipeline twice against a local registry
#   compile   regenerate KFP components, compiled pipelines and Argo manifests
#   protos    regenerate lib/tlt/proto/*_pb2.py from the .proto files
#   images    build the container images with docker or podman: images [cpu|gpu|all] (default all)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="${TLT_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.tlt-setup-stamp"

log() { printf '[build.sh] %s\n' "$*" >&2; }
die() { printf '[build.sh] error: %s\n' "$*" >&2; exit 1; }

find_python() {
  for cand in "${PYTHON:-}" python3.11 python3; do
    [ -n "$cand" ] || continue
    if command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)' 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  return 1
}

setup_digest() {
  cat requirements.txt requirements-test.txt pyproject.toml | sha256sum | cut -d' ' -f1
}

cmd_setup() {
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(setup_digest)" ] && [ -x "$PY" ]; then
    return 0
  fi
  local base
  base="$(find_python)" || die "Python >= 3.11 not found (set PYTHON=/path/to/python3.11)"
  if [ ! -x "$PY" ]; then
    log "creating virtual environment in $VENV with $base"
    "$base" -m venv "$VENV"
  fi
  log "installing pinned dependencies (first run downloads TensorFlow; a few minutes)"
  "$PY" -m pip install --quiet --upgrade pip
  "$PY" -m pip install --quiet -r requirements.txt -r requirements-test.txt
  "$PY" -m pip install --quiet --no-deps -e .
  setup_digest > "$STAMP"
  log "setup done: activate with 'source $VENV/bin/activate'"
}

cmd_test() {
  cmd_setup
  # Two pytest workers by default (TLT_TEST_WORKERS to change): most tests wait on TensorFlow
  # start-up, subprocesses or local servers, so two share a 2-core machine well.
  local args=(-n "${TLT_TEST_WORKERS:-2}") all=""
  for a in "$@"; do
    if [ "$a" = "--all" ]; then all=1; else args+=("$a"); fi
  done
  # CI has the time for the slow tests too (a few minutes more); GPU tests need a GPU.
  if [ -n "$all" ] || [ "${CI:-}" = "true" ]; then args+=(-m "not gpu"); fi
  "$PY" -m pytest "${args[@]}"
}

cmd_demo() {
  cmd_setup
  local out="${TLT_DEMO_DIR:-$ROOT/demo-output}"
  mkdir -p "$out"
  if [ "${1:-}" = "retraining" ]; then
    shift
    log "retraining demo: two synthetic batches of new data, two local runs of the retraining" \
        "pipeline against the registry $out/retraining/registry"
    "$VENV/bin/tlt-pipeline" demo-retraining --work "$out/retraining" "$@"
    return
  fi
  # The sample data the pipeline's default spec (tlt.orchestration.pipelines.DEFAULT_DETECTION_SPEC)
  # is sized for: 240 frames at its input size 240x128, 20 % of them for validation.
  log "making the bundled sample data set in $out/sample-data"
  "$VENV/bin/tlt-sample-data" detection "$out/sample-data" --frames 240 --width 240 --height 128 \
    --seed 7 --overwrite
  log "running the detection pipeline locally (kfp.local, no cluster): convert, train, evaluate," \
      "prune, retrain, evaluate, quality gate, export, fp32 and int8 engines, evaluate the engine," \
      "run summary"
  "$VENV/bin/tlt-pipeline" run detection --local --pipeline-root "$out/pipeline-root" \
    --param "dataset_root=$out/sample-data" "$@"
}

cmd_compile() { cmd_setup; "$VENV/bin/tlt-pipeline" compile "$@"; }

cmd_protos() { cmd_setup; "$PY" -m tlt.proto.generate "$@"; }

# The first engine whose daemon/service answers (`info` succeeds), or nothing.
container_engine() {
  local e
  for e in docker podman; do
    if command -v "$e" >/dev/null 2>&1 && "$e" info >/dev/null 2>&1; then echo "$e"; return 0; fi
  done
  return 1
}

# Image reference and Dockerfile of one flavour, from tlt.orchestration.paths (the one place that
# names the images; TLT_IMAGE / TLT_GPU_IMAGE override the references there too).
image_field() {
  "$PY" -c 'import sys; from tlt.orchestration.paths import get_flavour
f = get_flavour(sys.argv[1]); print(f.ref() if sys.argv[2] == "ref" else f.dockerfile)' "$1" "$2"
}

cmd_images() {
  local which="${1:-all}" engine flavours flavour ref file
  case "$which" in
    cpu|gpu) flavours=("$which") ;;
    all) flavours=(cpu gpu) ;;
    *) die "unknown image '$which': expected cpu, gpu or all" ;;
  esac
  engine="$(container_engine)" || die "no usable container engine: install docker or podman and make sure its daemon/service runs ('docker info' must succeed)"
  [ -x "$PY" ] || cmd_setup
  for flavour in "${flavours[@]}"; do
    ref="$(image_field "$flavour" ref)"
    file="$(image_field "$flavour" dockerfile)"
    log "building the $flavour image $ref from $file with $engine"
    "$engine" build -f "$file" -t "$ref" .
  done
}

main() {
  local cmd="${1:-}"
  [ $# -gt 0 ] && shift
  case "$cmd" in
    setup) cmd_setup "$@" ;;
    test) cmd_test "$@" ;;
    demo) cmd_demo "$@" ;;
    compile) cmd_compile "$@" ;;
    protos) cmd_protos "$@" ;;
    images) cmd_images "$@" ;;
    -h|--help|help|"") sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command '$cmd' (try ./build.sh help)" ;;
  esac
}

main "$@"
