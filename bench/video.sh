#!/usr/bin/env bash
# Video benchmark (issue 12): bench_video from the release build -> bench/results/video.md
# (`make bench` runs it; BENCH=video runs only this one).
#
#   BUILD_DIR  release build tree (default: build)
#   Makes bench/results/video-1080p.mp4 once with ffmpeg (scripts/setup.sh bench installs it):
#   the chair sample scaled to 1920x1080, looped to 60 s, H.264 (libx264 CRF 23,
#   preset veryfast, key frame at most every 250 frames, B-frames), 30 frames/s.
#   Extra arguments go to bench_video (--runs R, --videos N, hash, match).
#   Meta's vpdq-hash-video on the same files: bench/video_vs_meta.sh (docs/BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake --build "$build" --target bench_video >/dev/null
mkdir -p bench/results
src=tests/data/vpdq/videos/chair-orig-22-sd-bar.mp4
vid=bench/results/video-1080p.mp4
if [ ! -s "$vid" ]; then
  ffmpeg -v error -y -stream_loop 2 -i "$src" -t 60 -vf scale=1920:1080 -an -c:v libx264 -preset veryfast \
    -pix_fmt yuv420p -r 30 "$vid"
fi
out=bench/results/video.md
{
  echo "<!-- bench/video.sh: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') -->"
  echo
  "$build/bench/bench_video" --video "$vid" "$@"
} > "$out"
cat "$out"
