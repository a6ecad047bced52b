#!/usr/bin/env bash
# PDQ hashing benchmark (issue 2, "Performance"); `make bench` runs it. Writes bench/results/hash.md.
#
#   BUILD_DIR  release build tree (bench_hash in $BUILD_DIR/bench/, vigil in $BUILD_DIR/src/cli/)
#   PDQ_REF    optional: path to Meta's pdq-photo-hasher, built by hand outside this repository
#              (docs/BENCHMARKS.md says how). When set, whole-process throughput of
#              `vigil hash` (fast, compat) and of the reference is measured side by side, in
#              alternating rounds, on the same copies of each size class, and the compat output
#              is checked to be identical to the reference's.
#   COPIES     files per process run in that comparison (default 20); ROUNDS (default 3)
#   MIN_TIME   seconds per bench_hash measurement (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
bench_bin=$BUILD_DIR/bench/bench_hash
vigil=$BUILD_DIR/src/cli/vigil
copies=${COPIES:-20}
rounds=${ROUNDS:-3}
out=bench/results/hash.md
mkdir -p bench/results
[ -x "$bench_bin" ] || { echo "hash.sh: $bench_bin not built" >&2; exit 1; }

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

{
  echo "# PDQ hashing benchmark"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: \`bench/hash.sh\` (BUILD_DIR=$BUILD_DIR)"
  echo
  echo "## Decode and hash per size class (single thread, ms)"
  echo
  echo "\`$bench_bin --min-time ${MIN_TIME:-2}\`: each file is decoded and hashed from memory"
  echo "repeatedly; decode includes the resize/sampling to the hashed grid. tjbench is"
  echo "\`tjbench FILE -scale 1/8\` (libjpeg-turbo's own decoder to BGR at 1/8 scale, one frame),"
  echo "run right after ours; ratio = our median total / tjbench's frame time (both wall clock)."
  echo "CPU = median CPU time of our thread per decode + hash, less sensitive to other load."
  echo
  "$bench_bin" --min-time "${MIN_TIME:-2}" 2>"$tmp/hashes.txt"
  echo
  echo "Hashes (fast vs compat on the same file):"
  echo
  sed 's/^/    /' "$tmp/hashes.txt"
} >"$out.tmp"

if [ -n "${PDQ_REF:-}" ]; then
  [ -x "$PDQ_REF" ] || { echo "hash.sh: PDQ_REF=$PDQ_REF is not executable" >&2; exit 1; }
  [ -x "$vigil" ] || { echo "hash.sh: $vigil not built" >&2; exit 1; }
  {
    echo
    echo "## Whole-process throughput against Meta's pdq-photo-hasher"
    echo
    echo "Each command hashes the same $copies copies of one class file in one process; $rounds"
    echo "alternating rounds, median wall time. Reference: \`$PDQ_REF\` (default build: it decodes"
    echo "through ImageMagick's \`convert\`, as shipped)."
    echo
    echo "| class | vigil fast img/s | vigil compat img/s | pdq-photo-hasher img/s | fast / ref | compat / ref | compat output identical |"
    echo "|---|---|---|---|---|---|---|"
    for class in S M L HD; do
      src=bench/images/$class.jpg
      [ -f "$src" ] || continue
      mkdir -p "$tmp/$class"
      files=()
      for i in $(seq 1 "$copies"); do
        cp "$src" "$tmp/$class/$class-$i.jpg"
        files+=("$tmp/$class/$class-$i.jpg")
      done
      : >"$tmp/fast.ms"; : >"$tmp/compat.ms"; : >"$tmp/ref.ms"
      for r in $(seq 1 "$rounds"); do
        t0=$(now_ms); "$vigil" hash --mode fast "${files[@]}" >/dev/null; t1=$(now_ms)
        echo $((t1 - t0)) >>"$tmp/fast.ms"
        t0=$(now_ms); "$vigil" hash --mode compat "${files[@]}" >"$tmp/ours.txt"; t1=$(now_ms)
        echo $((t1 - t0)) >>"$tmp/compat.ms"
        t0=$(now_ms); "$PDQ_REF" "${files[@]}" >"$tmp/ref.txt"; t1=$(now_ms)
        echo $((t1 - t0)) >>"$tmp/ref.ms"
      done
      f=$(median <"$tmp/fast.ms"); c=$(median <"$tmp/compat.ms"); R=$(median <"$tmp/ref.ms")
      same=$(cmp -s "$tmp/ours.txt" "$tmp/ref.txt" && echo yes || echo NO)
      awk -v n="$copies" -v f="$f" -v c="$c" -v r="$R" -v k="$class" -v s="$same" 'BEGIN {
        printf "| %s | %.1f | %.1f | %.1f | %.1fx | %.1fx | %s |\n",
               k, n * 1000 / f, n * 1000 / c, n * 1000 / r, r / f, r / c, s }'
    done
  } >>"$out.tmp"
fi
mv "$out.tmp" "$out"
cat "$out"
