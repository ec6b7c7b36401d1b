#!/usr/bin/env bash
# `make run`: the local control plane is up (make cluster-up) and the binaries are built. Install the CRDs and start,
# as background processes: the operator, the MCP gateway (verifying agents' tokens), the process node (which runs
# agent Pods that ask for it as local processes: agent-runner and Claude Code) and, without ANTHROPIC_API_KEY, the
# local Anthropic stand-in with its demo model. Then tell the newcomer what to do.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
local_dir=$root/.local
run=$local_dir/run
bin=$root/target/debug
export KUBECONFIG=$local_dir/kubeconfig
kubectl=$local_dir/bin/kubectl
mkdir -p "$run"

"$kubectl" apply --server-side --force-conflicts --field-manager=make-run -f "$root/crds/manifests/" >/dev/null
"$kubectl" wait --for condition=established --timeout=60s crd/agentjobs.agentorchestrator.dev \
  crd/agentsessions.agentorchestrator.dev crd/agentblueprints.agentorchestrator.dev >/dev/null

# The kubectl plugin: `kubectl agents ...` finds it on PATH (a link, so a rebuild is picked up).
ln -sf "$bin/kubectl-agents" "$local_dir/bin/kubectl-agents"

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

wait_http() { # what, url
  for _ in $(seq 1 200); do
    curl -fsS "$2" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$1 did not answer at $2; see its log in $run/" >&2
  exit 1
}

# The model: the real Anthropic API when ANTHROPIC_API_KEY is set, else the local stand-in. Blueprints read both from
# the Secret and ConfigMap "anthropic" (see examples/local-claude-blueprint.yaml).
if [ -n "${ANTHROPIC_API_KEY:-}" ]; then
  model="the Anthropic API (ANTHROPIC_API_KEY)"
  key=$ANTHROPIC_API_KEY
  "$kubectl" delete configmap anthropic --ignore-not-found >/dev/null
  "$kubectl" create configmap anthropic >/dev/null
else
  model="the local stand-in model (set ANTHROPIC_API_KEY before make run for the real one)"
  key=sk-local-stand-in
  start fake-anthropic "$bin/fake-anthropic" --listen 127.0.0.1:9600
  "$kubectl" create configmap anthropic --from-literal=base-url=http://127.0.0.1:9600 \
    --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
fi
"$kubectl" create secret generic anthropic --from-literal=api-key="$key" \
  --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null

start process-node env PATH="$bin:$local_dir/claude/node_modules/.bin:$PATH" RUST_LOG=info,kube=warn \
  "$bin/process-node" --kubeconfig "$KUBECONFIG" --default-storage-class
start mcp-gateway "$bin/mcp-gateway" --auth token --listen 127.0.0.1:9500 --namespace default
start agent-operator "$bin/agent-operator" --leader-election=false \
  --mcp-url http://127.0.0.1:9500/mcp --metrics-addr 127.0.0.1:8080

# A person for the dashboard and people's MCP clients: ServiceAccount "dashboard-user" in default, with the Role
# docs/operations.md documents (what the MCP tools and the dashboard's actions need).
"$kubectl" apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: ServiceAccount
metadata: {name: dashboard-user, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: agent-user, namespace: default}
rules:
  - apiGroups: [agentorchestrator.dev]
    resources: [agentjobs]
    verbs: [get, list, watch, create, delete]
  - apiGroups: [agentorchestrator.dev]
    resources: [agentsessions, agentblueprints]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: agent-user-dashboard-user, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: agent-user}
subjects: [{kind: ServiceAccount, name: dashboard-user, namespace: default}]
YAML

wait_http "agent-operator" http://127.0.0.1:8080/readyz
wait_http "mcp-gateway" http://127.0.0.1:9500/readyz
"$kubectl" wait --for condition=Ready --timeout=30s node/process-node-0 >/dev/null

cat <<MSG

Agent Orchestrator is running on the local control plane; agents use $model.

  export KUBECONFIG=$KUBECONFIG PATH=$local_dir/bin:\$PATH

A two-level tree of real Claude Code agents (Pods run as local processes on node process-node-0):
  kubectl apply -f examples/local-claude-blueprint.yaml -f examples/tree-job.yaml
  kubectl get agj,ags -w            # planner starts two children; their callbacks resume planner
  kubectl agents tree planner -w    # the same as a tree (docs/cli.md); kubectl agents logs -f planner
  kubectl get ags planner -o jsonpath='{.status.result}'

The dashboard (the tree live, each session's jobs and conversation, start/resume/stop/delete):
  http://127.0.0.1:9500/ui/#/ns/default
  sign in with the token of ServiceAccount dashboard-user (the Role agent-user in default):
  kubectl create token dashboard-user --duration=8h

Simulated agents (kwok, no processes):
  kubectl apply -f examples/blueprint.yaml -f examples/start-job.yaml
  kubectl apply -f examples/resume-job.yaml
  kubectl describe ags hello        # status, conditions and Events

Where to look:
  agent logs:   kubectl logs -f POD   (or $local_dir/process-node/logs/NAMESPACE/POD/agent.log)
  processes:    $run/*.log    (operator, gateway, process node, model stand-in)
  metrics:      http://127.0.0.1:8080/metrics (operator)   http://127.0.0.1:9500/metrics (gateway)
Stop: make stop (these processes) or make cluster-down (everything)
MSG
