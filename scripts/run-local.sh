#!/usr/bin/env bash
# `make run`: the local control plane is up (make cluster-up); install the CRDs and start the operator (and the
# gateway, once built) against it as background processes, then tell the newcomer what to do.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
local_dir=$root/.local
run=$local_dir/run
export KUBECONFIG=$local_dir/kubeconfig
kubectl=$local_dir/bin/kubectl
mkdir -p "$run"

"$kubectl" apply -f "$root/crds/manifests/" >/dev/null
"$kubectl" wait --for condition=established --timeout=60s crd/agentjobs.agentorchestrator.dev \
  crd/agentsessions.agentorchestrator.dev crd/agentblueprints.agentorchestrator.dev >/dev/null

start() { # name, then the command
  local name=$1; shift
  if [ -f "$run/$name.pid" ] && kill -0 "$(cat "$run/$name.pid")" 2>/dev/null; then
    echo "$name is already running (pid $(cat "$run/$name.pid"))"
    return
  fi
  nohup "$@" >"$run/$name.log" 2>&1 </dev/null &
  echo $! >"$run/$name.pid"
  echo "started $name (pid $!, log $run/$name.log)"
}

start agent-operator "$root/target/debug/agent-operator" --leader-election=false \
  --mcp-url http://127.0.0.1:9500/mcp --metrics-addr 127.0.0.1:8080
if [ -x "$root/target/debug/mcp-gateway" ] && "$root/target/debug/mcp-gateway" --help >/dev/null 2>&1; then
  start mcp-gateway "$root/target/debug/mcp-gateway" --auth header --listen 127.0.0.1:9500 --namespace default
fi

for port in 8080; do
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

cat <<MSG

Agent Orchestrator is running on the local control plane.

  export KUBECONFIG=$KUBECONFIG PATH=$local_dir/bin:\$PATH
  kubectl apply -f examples/blueprint.yaml
  kubectl apply -f examples/start-job.yaml
  kubectl get agj,ags -w            # the job runs, the session goes Running, then Idle
  kubectl apply -f examples/resume-job.yaml
  kubectl describe ags hello        # status, conditions and Events

Operator metrics: http://127.0.0.1:8080/metrics   MCP gateway: http://127.0.0.1:9500/mcp
Logs: $run/*.log    Stop everything: make cluster-down
MSG
