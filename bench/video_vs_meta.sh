#!/usr/bin/env bash
# Side by side with Meta's vpdq-hash-video (issue 12): the same files hashed at 1 frame/s on one
# core (taskset -c CORE), runs interleaved, CPU = user + sys of the whole command (ours includes
# the decoder child), median of RUNS. Prints a Markdown table.
#
#   VPDQ_HASH_VIDEO  Meta's binary, built outside this repository (docs/BENCHMARKS.md "Video"
#                    says how); without it only our rows are measured.
#   BUILD_DIR        release build tree (default: build)
#   RUNS (5), CORE (0)
#   Arguments: video files (default: bench/results/video-1080p.mp4, made by bench/video.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
runs=${RUNS:-5}
core=${CORE:-0}
meta=${VPDQ_HASH_VIDEO:-}
[ $# -gt 0 ] || set -- bench/results/video-1080p.mp4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
vigil=$build/src/cli/vigil
tools=(exact slf)
[ -n "$meta" ] && tools=(meta "${tools[@]}")
cpu() { # label file cmd...: appends "label file seconds" to $tmp/raw
  local label=$1 file=$2
  shift 2
  /usr/bin/time -f "%U %S" -o "$tmp/t" taskset -c "$core" "$@" >"$tmp/out" 2>/dev/null
  echo "$label $file $(awk '{print $1 + $2}' "$tmp/t") $(grep -vc '^#' "$tmp/out" || true)" >>"$tmp/raw"
}
for ((r = 0; r < runs; r++)); do
  for f in "$@"; do
    for t in "${tools[@]}"; do
      case $t in
      meta) cpu meta "$f" "$meta" -r 1 -t 1 -i "$f" -o /dev/stdout ;;
      exact) cpu exact "$f" "$vigil" vhash "$f" ;;
      slf) cpu slf "$f" "$vigil" vhash --skip-loop-filter "$f" ;;
      esac
    done
  done
done
echo "<!-- bench/video_vs_meta.sh: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)," \
  "core $core of $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg), $runs runs -->"
echo
echo "| file | Meta \`-r 1 -t 1\` (s) | \`vigil vhash\` exact (s) | ratio | \`--skip-loop-filter\` (s) | ratio |"
echo "|---|---|---|---|---|---|"
for f in "$@"; do
  med() { awk -v t="$1" -v f="$f" '$1 == t && $2 == f {print $3}' "$tmp/raw" | sort -g |
    awk '{a[NR] = $1} END {if (NR) printf "%.2f", a[int((NR + 1) / 2)]; else printf "-"}'; }
  m=$(med meta) e=$(med exact) s=$(med slf)
  ratio() { awk -v a="$m" -v b="$1" 'BEGIN {if (a == "-" || b + 0 == 0) print "-"; else printf "%.1fx", a / b}'; }
  echo "| $(basename "$f") | $m | $e | $(ratio "$e") | $s | $(ratio "$s") |"
done
echo
echo "Frames listed per run (tool file count): $(awk '{print $1, $2, $4}' "$tmp/raw" | sort -u | tr '\n' ';')"
