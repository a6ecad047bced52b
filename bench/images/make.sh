#!/usr/bin/env bash
# Makes the benchmark size classes (S 320x240, M 1024x768, L 1920x1080, HD 3840x2160, JPEG q90)
# from one real photograph: tests/data/pdq/reg-test-input/exif-rotn/exif-rotn-1.jpg (4032x3024,
# Samsung SM-G930V, EXIF orientation 1; ThreatExchange, BSD, see SOURCES.md). Each class is the
# largest centred crop of the class's aspect ratio, resized with ImageMagick's default filter,
# metadata stripped, baseline JPEG quality 90 with 4:2:0 chroma (ImageMagick's default).
# Rerun it to regenerate the committed files (ImageMagick 6.9.11 here; other versions may
# differ in bytes, not in nature).
set -euo pipefail
cd "$(dirname "$0")"
src=../../tests/data/pdq/reg-test-input/exif-rotn/exif-rotn-1.jpg
make_class() { # name width height
  convert "$src" -auto-orient -gravity center -crop "$(crop_for "$2" "$3")+0+0" +repage \
    -resize "${2}x${3}!" -strip -sampling-factor 2x2 -quality 90 "$1.jpg"
  echo "$1.jpg: $(identify -format '%wx%h' "$1.jpg"), $(stat -c %s "$1.jpg") bytes"
}
# Largest W x H crop of the 4032x3024 source with the aspect ratio w:h.
crop_for() {
  local w=$1 h=$2 sw=4032 sh=3024
  if (( sw * h > sh * w )); then echo "$(( sh * w / h ))x${sh}"; else echo "${sw}x$(( sw * h / w ))"; fi
}
make_class S 320 240
make_class M 1024 768
make_class L 1920 1080
make_class HD 3840 2160
