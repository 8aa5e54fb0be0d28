#!/usr/bin/env bash
# One end-to-end training run on the recorded music corpus, then every metric of the run (system/*
# sampled every 2 s, gpu/mem_*_peak_mb, train/val/test scores) with its history as JSON.
# Before: `bash benchmarks/gpu_wheels.sh` (-> .whl/) and `python -m corpora.recorded_music
# .gpu_data/recorded --cache-dir .gpu_data/debcache` (48 songs; both folders in .git/info/exclude).
# On a lent GPU machine, run with carry [".whl", ".gpu_data/recorded"] (never all of .gpu_data: the
# .deb cache is 700 MB); the audio is decoded there (a few seconds on 16 cores):
#     set -o pipefail; E2E_TRACKING_URI=sqlite:///$OUT/e2e_mlflow.db bash benchmarks/gpu_e2e.sh \
#         $OUT/e2e_metrics.json 2>&1 | tee $OUT/e2e.log
# Rehearsal on a CPU (any of the E2E_* below may be set):
#     E2E_DEVICE=cpu E2E_EPOCHS=1 E2E_OVERRIDES="preset=cpu" PYTHON=.venv/bin/python \
#         bash benchmarks/gpu_e2e.sh /tmp/e2e_metrics.json
# The wheels are installed into $E2E_SITE (/tmp/site) only when the Python has no mlflow.
set -euo pipefail
cd "$(dirname "$0")/.."
JSON=${1:?usage: gpu_e2e.sh METRICS.json}
PY=${PYTHON:-python3}
SITE=${E2E_SITE:-/tmp/site}
if ! "$PY" -c 'import mlflow' 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "${E2E_WHEELS:-.whl}"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL=${E2E_SAMPLING:-2}
export MLFLOW_TRACKING_URI=${E2E_TRACKING_URI:-sqlite:////tmp/e2e_mlflow.db}
DATA=${E2E_DATA:-.gpu_data/recorded/metadata.csv}
[ -f "$DATA" ] || { echo "no corpus at $DATA: build it with corpora/recorded_music.py" >&2; exit 1; }
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
started=$(date +%s)
"$PY" -m pipelines.train --model "${E2E_MODEL:-conv_vae}" --data "$DATA" \
  --overrides "train.epochs=${E2E_EPOCHS:-3} train.device=${E2E_DEVICE:-cuda} ${E2E_OVERRIDES:-}"
echo "train: $(( $(date +%s) - started )) s"
"$PY" - "$JSON" <<'EOF'
import json, sys, mlflow
client = mlflow.MlflowClient()
run = mlflow.search_runs(search_all_experiments=True, order_by=["attributes.start_time DESC"],
                         max_results=1, output_format="list")[0]
info = run.info
metrics = {key: [[m.step, m.value, m.timestamp] for m in client.get_metric_history(info.run_id, key)]
           for key in sorted(run.data.metrics)}
out = {"run_id": info.run_id, "status": info.status, "seconds": (info.end_time - info.start_time) / 1000,
       "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.log")},
       "params": run.data.params, "metrics": metrics}
json.dump(out, open(sys.argv[1], "w"), indent=1)
gpu = [k for k in metrics if k.startswith(("system/gpu", "gpu/"))]
print(f"run {info.run_id} {info.status} {out['seconds']:.0f} s: {len(metrics)} metrics, "
      f"{sum(k.startswith('system/') for k in metrics)} system/*, GPU: {gpu}")
EOF
