#!/usr/bin/env bash
# Runs every libFuzzer target in a sanitizer build for FUZZ_SECONDS each, starting from its seed
# corpus fuzz/corpus/<target>/ (copied to a scratch dir so runs never modify the repository).
# A crash fails the script, leaves the reproducer in fuzz/crashes/ and prints it (base64) when small.
set -euo pipefail
dir=${1:?build dir}
secs=${FUZZ_SECONDS:-20}
cd "$(dirname "$0")/.."
mkdir -p fuzz/crashes
found=0
for bin in $(find "$dir" -type f -name 'fuzz_*' -perm -u+x | sort); do
  found=1
  name=$(basename "$bin")
  work=$(mktemp -d)
  [ -d "fuzz/corpus/$name" ] && cp -r "fuzz/corpus/$name/." "$work/" 2>/dev/null || true
  echo "fuzz: $name for ${secs}s"
  if ! "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=0 \
       -artifact_prefix="fuzz/crashes/$name-" "$work" >"$work.log" 2>&1; then
    tail -50 "$work.log"
    # CI runs in a throwaway clone: print small reproducers so the log alone can replay them
    # (base64 -d > file; build-asan/.../fuzz_x file).
    for f in fuzz/crashes/"$name"-*; do
      [ -f "$f" ] && [ "$(stat -c %s "$f")" -le 65536 ] || continue
      echo "fuzz: reproducer $f (base64):"
      base64 -w 120 "$f"
    done
    echo "fuzz: $name FAILED (reproducer in fuzz/crashes/)" >&2
    rm -rf "$work" "$work.log"
    exit 1
  fi
  grep -E '^Done|#[0-9]+.*DONE' "$work.log" | tail -1 || true
  rm -rf "$work" "$work.log"
done
[ "$found" = 1 ] || echo "fuzz: no targets built"
