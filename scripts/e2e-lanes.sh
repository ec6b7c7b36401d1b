#!/usr/bin/env bash
# `make e2e`: every e2e test binary against the running local cluster, several binaries at a time. Each test works in
# a namespace of its own with an operator of its own, so binaries do not share state; most of their time is spent
# waiting on the API server and on agent processes, so running them side by side shortens the suite without loading
# the two cores more than a build does. Each binary's output goes to target/e2e-logs/<name>.out, is printed when it
# fails, and every binary runs even when one fails (like `cargo test --no-fail-fast`).
#
# Binaries listed in `alone` restart parts of the control plane every test shares (chaos restarts kube-apiserver):
# they run one at a time after all the others have ended.
#
# E2E_LANES: binaries run at once (default 3). E2E_ONLY: a space-separated list of binaries to run (default: all).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lanes=${E2E_LANES:-3}
logs=$root/target/e2e-logs
mkdir -p "$logs"

# Build the test binaries once; cargo prints "Executable tests/NAME.rs (PATH)" for each.
build_out=$(cd "$root" && cargo test -p e2e --no-run 2>&1) || { echo "$build_out"; exit 1; }
declare -A exe=()
while read -r name path; do
  case $path in /*) exe[$name]=$path ;; *) exe[$name]=$root/$path ;; esac
done < <(sed -n 's/^ *Executable tests\/\([a-z_]*\)\.rs (\(.*\))$/\1 \2/p' <<<"$build_out")
if [ ${#exe[@]} -eq 0 ]; then
  echo "no e2e test binaries found in cargo's output:"; echo "$build_out"; exit 1
fi

# Longest first, so that the last lane to finish is not the one that started the slowest binary last. Binaries not
# named here (new ones) run after these.
alone=(chaos)
order=(chart real_agents tracing resilience callbacks dashboard lifecycle gateway binding confinement cli refusals control_plane
  admission examples docs)
names=()
for n in "${order[@]}"; do [ -n "${exe[$n]:-}" ] && names+=("$n"); done
for n in $(printf '%s\n' "${!exe[@]}" | sort); do
  case " ${names[*]} " in *" $n "*) ;; *) names+=("$n") ;; esac
done
if [ -n "${E2E_ONLY:-}" ]; then
  wanted=()
  for n in $E2E_ONLY; do
    [ -n "${exe[$n]:-}" ] || { echo "E2E_ONLY names $n, which is not an e2e test binary (${!exe[*]})"; exit 1; }
    wanted+=("$n")
  done
  names=("${wanted[@]}")
fi

echo "e2e: ${#names[@]} test binaries, $lanes at a time: ${names[*]}"
start=$(date +%s)
declare -A pid_of=() began=()
failed=()
finish() { # name: report a binary that has ended (its exit status is in its .rc file)
  local n=$1 rc
  rc=$(cat "$logs/$n.rc")
  local took=$(($(date +%s) - ${began[$n]}))
  local summary
  summary=$(grep -E '^test result:' "$logs/$n.out" | tail -n1 || true)
  if [ "$rc" -eq 0 ]; then
    echo "e2e: $n passed in ${took}s (${summary:-no summary})"
  else
    echo "e2e: $n FAILED (exit $rc) in ${took}s; its output:"
    sed 's/^/    /' "$logs/$n.out"
    failed+=("$n")
  fi
  unset "pid_of[$n]"
}
launch() { # name
  local n=$1
  rm -f "$logs/$n.rc"
  # As `cargo test` runs it: from the package's folder. The exit status is written last, so a present .rc file means
  # the binary has ended.
  (cd "$root/e2e" && rc=0 && { "${exe[$n]}" >"$logs/$n.out" 2>&1 || rc=$?; } && echo "$rc" >"$logs/$n.rc") &
  pid_of[$n]=$!
  began[$n]=$(date +%s)
  echo "e2e: $n started"
}
drain_to() { # at most this many still running
  while [ ${#pid_of[@]} -gt "$1" ]; do
    wait -n || true
    for running in "${!pid_of[@]}"; do
      [ -f "$logs/$running.rc" ] && finish "$running"
    done
  done
  return 0
}
later=()
for n in "${names[@]}"; do
  case " ${alone[*]} " in *" $n "*) later+=("$n"); continue ;; esac
  drain_to $((lanes - 1))
  launch "$n"
done
drain_to 0
for n in "${later[@]}"; do
  launch "$n"
  drain_to 0
done

echo "e2e: ${#names[@]} binaries in $(($(date +%s) - start))s; failed: ${failed[*]:-none}"
[ ${#failed[@]} -eq 0 ]
