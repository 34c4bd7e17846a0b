#!/usr/bin/env bash
# Screenshots of what a reviewer sees in the MLflow UI after a search: the experiment, the
# search's parent run and its first Pareto child, taken with headless Chromium (Debian's
# `chromium` package) from an `mlflow ui` started on loopback and stopped again at the end.
#
# Usage: scripts/review_screenshots.sh TRACKING_URI EXPERIMENT [OUT_DIR]
#   e.g. scripts/review_screenshots.sh sqlite:///outputs/mlflow.db quickstart screenshots
set -euo pipefail

uri=${1:?usage: $0 TRACKING_URI EXPERIMENT [OUT_DIR]}
experiment=${2:?usage: $0 TRACKING_URI EXPERIMENT [OUT_DIR]}
out=${3:-screenshots}
python=${PYTHON:-python}
browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$browser" ]]; then
    echo "error: chromium is not installed (apt-get install -y chromium)" >&2
    exit 2
fi
mkdir -p "$out"

# A free port on loopback, so the script never collides with a UI already running.
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$python" -m mlflow ui --backend-store-uri "$uri" --host 127.0.0.1 --port "$port" \
    > "$out/mlflow-ui.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT

base="http://127.0.0.1:$port"
for _ in $(seq 120); do
    curl -sf "$base/health" > /dev/null && break
    sleep 1
done
curl -sf "$base/health" > /dev/null || { echo "error: mlflow ui did not start; see $out/mlflow-ui.log" >&2; exit 1; }

# The ids come from MLflow's client, found the way the search tags its runs.
read -r exp_id parent child < <("$python" - "$uri" "$experiment" <<'PY'
import sys

from mlflow import MlflowClient

client = MlflowClient(tracking_uri=sys.argv[1])
exp = client.get_experiment_by_name(sys.argv[2])
if exp is None:
    sys.exit(f"error: no experiment {sys.argv[2]!r} in {sys.argv[1]}")
parents = client.search_runs([exp.experiment_id], "tags.`sparsearch.role` = 'search'",
                             order_by=["attributes.start_time DESC"], max_results=1)
child = client.search_runs([exp.experiment_id], "tags.`sparsearch.role` = 'trial' and "
                           f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}' and "
                           "tags.pareto_rank = '0'", max_results=1)
print(exp.experiment_id, parents[0].info.run_id, child[0].info.run_id if child else "")
PY
)

shoot() {  # NAME URL
    "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --window-size=1600,1100 --virtual-time-budget=20000 \
        --screenshot="$out/$1.png" "$2" > /dev/null 2>&1
    echo "$out/$1.png  $2"
}
# The model-training layout, as the search's review line links to it (the UI's default is
# its GenAI layout).
ml="?workflowType=machine_learning"
shoot experiment "$base/#/experiments/$exp_id/runs$ml"
shoot parent-run "$base/#/experiments/$exp_id/runs/$parent$ml"
if [[ -n "$child" ]]; then
    shoot pareto-child "$base/#/experiments/$exp_id/runs/$child$ml"
fi
