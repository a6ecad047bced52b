#!/usr/bin/env bash
# Runs every libFuzzer target in a sanitizer build for FUZZ_SECONDS each, starting from its seed
# corpus fuzz/corpus/<target>/ (copied to a scratch dir so runs never modify the repository).
# FUZZ_JOBS targets run at once (default: the CPU count): each target is one process on one core,
# so on CI's 2 cores two at a time halve the wall time and give each target the same executions.
# A crash fails the script, leaves the reproducer in fuzz/crashes/ and prints it (base64) when small.
set -euo pipefail
dir=${1:?build dir}
secs=${FUZZ_SECONDS:-20}
jobs=${FUZZ_JOBS:-$(nproc)}
cd "$(dirname "$0")/.."
mkdir -p fuzz/crashes
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# One target: its log in $scratch/<name>.log, its exit status in $scratch/<name>.rc.
run_one() {
  local bin=$1 name work
  name=$(basename "$bin")
  work="$scratch/$name.corpus"
  mkdir -p "$work"
  [ -d "fuzz/corpus/$name" ] && cp -r "fuzz/corpus/$name/." "$work/" 2>/dev/null || true
  local rc=0
  "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=0 \
    -artifact_prefix="fuzz/crashes/$name-" "$work" >"$scratch/$name.log" 2>&1 || rc=$?
  echo "$rc" >"$scratch/$name.rc"
  rm -rf "$work"
}

# Reports one finished target; returns 1 when it failed.
report() {
  local name=$1
  if [ "$(cat "$scratch/$name.rc")" != 0 ]; then
    tail -50 "$scratch/$name.log"
    # CI runs in a throwaway clone: print small reproducers so the log alone can replay them
    # (base64 -d > file; build-asan/.../fuzz_x file).
    for f in fuzz/crashes/"$name"-*; do
      [ -f "$f" ] && [ "$(stat -c %s "$f")" -le 65536 ] || continue
      echo "fuzz: reproducer $f (base64):"
      base64 -w 120 "$f"
    done
    echo "fuzz: $name FAILED (reproducer in fuzz/crashes/)" >&2
    return 1
  fi
  echo "fuzz: $name: $(grep -E '^Done|#[0-9]+.*DONE' "$scratch/$name.log" | tail -1 || true)"
}

mapfile -t bins < <(find "$dir" -type f -name 'fuzz_*' -perm -u+x | sort)
if [ "${#bins[@]}" = 0 ]; then
  echo "fuzz: no targets built"
  exit 0
fi
echo "fuzz: ${#bins[@]} targets, ${secs}s each, $jobs at a time"
failed=0
for ((i = 0; i < ${#bins[@]}; i += jobs)); do
  batch=("${bins[@]:i:jobs}")
  for bin in "${batch[@]}"; do
    echo "fuzz: $(basename "$bin") for ${secs}s"
    run_one "$bin" &
  done
  wait
  for bin in "${batch[@]}"; do
    report "$(basename "$bin")" || failed=1
  done
  [ "$failed" = 0 ] || exit 1
done
