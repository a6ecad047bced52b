#!/usr/bin/env bash
# Builds the copy-detection evaluation set of issue 14 (docs/MATCHING.md, "Evaluation") from
# Debian 12 packages, reproducibly: the packages at the versions below are downloaded with
# apt-get download and unpacked with dpkg-deb -x into CACHE (outside the repository), the
# pictures the rules below name become candidates (largest file first, so the largest version of
# a picture is the one kept), and `bench_copy --select` keeps those that decode, have a short
# side of at least 256 px, pass the quality gate and are no near duplicate of one kept before.
# The set (CACHE/set/NNNN.jpg, prepared at 640 px) is not committed; its manifest is
# (bench/copy_eval_manifest.tsv: file, package, version, class, path in the package, licences
# of the package's debian/copyright).
#
#   bench/copy_eval_set.sh CACHE [BENCH_COPY]      (default BENCH_COPY: build/bench/bench_copy)
#   COPY_EVAL_REUSE=1 keeps the selection already in CACHE and rewrites the manifest only.
#   nice build/bench/bench_copy --photos CACHE/set --mech all
set -euo pipefail

cache=${1:?usage: copy_eval_set.sh CACHE [BENCH_COPY]}
bench=${2:-build/bench/bench_copy}
here=$(cd "$(dirname "$0")" && pwd)
manifest="$here/copy_eval_manifest.tsv"

# package=version (Debian 12 "bookworm", main)
packages=(
    desktop-base=12.0.6+nmu1~deb12u1
    gnome-backgrounds=43.1-1
    mate-backgrounds=1.26.0-1
    ukui-wallpapers=20.04.3-1.1
    lomiri-wallpapers=20.04.0-2
    lomiri-wallpapers-16.04=20.04.0-2
    lomiri-wallpapers-20.04=20.04.0-2
    plasma-workspace-wallpapers=4:5.27.5-2
    sway-backgrounds=1.7-6
    lxqt-themes=1.2.0-1
    xfdesktop4-data=4.18.1-1
    mypaint-data-extras=2.0.1-9
    palapeli-data=4:22.12.3-1
    stellarium-data=0.22.2-1
    opencv-doc=4.6.0+dfsg-12
    flightgear-data-base=1:2020.3.16+dfsg-1
    supertuxkart-data=1.4+dfsg-2
    extremetuxracer-data=0.8.2-1
    tuxpaint-stamps-default=2022.06.04-1
    krita-data=1:5.1.5+dfsg-2+deb12u1
)

# package TAB path regex (within the unpacked package) TAB class. Classes: photo (photographs:
# wallpapers, astrophotographs, landscapes, sample photos), phototex (textures made from
# photographs: terrain, bark, stone), render (rendered or painted wallpapers), mixed (a package
# whose pictures are partly photographs, partly drawings). Left out: documentation screenshots,
# diagrams, game screenshots and UV texture atlases of 3D models.
rules=$(
    cat <<'EOF'
desktop-base	/usr/share/(desktop-base|wallpapers|backgrounds)/	render
gnome-backgrounds	/usr/share/backgrounds/	mixed
mate-backgrounds	/usr/share/backgrounds/	mixed
ukui-wallpapers	/usr/share/backgrounds/	photo
lomiri-wallpapers	/usr/share/	photo
lomiri-wallpapers-16.04	/usr/share/	photo
lomiri-wallpapers-20.04	/usr/share/	photo
plasma-workspace-wallpapers	/usr/share/wallpapers/	mixed
sway-backgrounds	/usr/share/backgrounds/	render
lxqt-themes	/usr/share/lxqt/wallpapers/	mixed
xfdesktop4-data	/usr/share/backgrounds/	mixed
mypaint-data-extras	/usr/share/mypaint/backgrounds/	phototex
palapeli-data	/usr/share/palapeli/	photo
stellarium-data	/usr/share/stellarium/(nebulae|landscapes)/	photo
stellarium-data	/usr/share/stellarium/textures/[a-z]	photo
opencv-doc	/usr/share/doc/opencv-doc/examples/	photo
flightgear-data-base	/usr/share/games/flightgear/Textures/(Terrain|Terrain.winter|Runway|Trees|Water|Sky|Splash)	phototex
supertuxkart-data	/usr/share/games/supertuxkart/data/textures/	phototex
extremetuxracer-data	/usr/share/games/etr/(terrains|env)/	phototex
tuxpaint-stamps-default	/usr/share/tuxpaint/stamps/	mixed
krita-data	/usr/share/krita/patterns/	phototex
EOF
)

mkdir -p "$cache/debs" "$cache/x"
(
    cd "$cache/debs"
    need=()
    for pv in "${packages[@]}"; do
        p=${pv%%=*} v=${pv#*=}
        ls "${p}_${v/:/%3a}"_*.deb >/dev/null 2>&1 || need+=("$pv")
    done
    [ ${#need[@]} -eq 0 ] || apt-get download "${need[@]}"
)
for pv in "${packages[@]}"; do
    p=${pv%%=*} v=${pv#*=}
    if [ ! -e "$cache/x/$p/.done" ]; then
        mkdir -p "$cache/x/$p"
        dpkg-deb -x "$cache/debs/${p}_${v/:/%3a}"_*.deb "$cache/x/$p"
        touch "$cache/x/$p/.done"
    fi
done

# candidates: size TAB path, largest first (ties by path, so the order is fixed)
: >"$cache/candidates.tsv"
while IFS=$'\t' read -r p re class; do
    (cd "$cache/x/$p" && find . -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \
        -o -iname '*.webp' \) -size +20k -printf '%s\t%P\n') |
        grep -E "^[0-9]+	${re#/}" | sed "s|\t|\t$p\t|" >>"$cache/candidates.tsv" || true
done <<<"$rules"
sort -t$'\t' -k1,1nr -k2,2 -k3,3 -u "$cache/candidates.tsv" |
    awk -F'\t' -v c="$cache/x" '{print c "/" $2 "/" $3}' >"$cache/candidates.list"
echo "copy_eval_set: $(wc -l <"$cache/candidates.list") candidates" >&2

if [ "${COPY_EVAL_REUSE:-0}" != 1 ] || [ ! -s "$cache/selected.tsv" ]; then # REUSE: manifest only
    rm -rf "$cache/set"
    mkdir -p "$cache/set"
    "$bench" --select "$cache/candidates.list" --out "$cache/set" >"$cache/selected.tsv" \
        2>"$cache/select.log"
fi
tail -1 "$cache/select.log" >&2

licences() { # the licences named in a package's debian/copyright, in order, once each
    local f="$cache/x/$1/usr/share/doc/$1/copyright"
    [ -f "$f" ] || { echo "see the package's copyright"; return; }
    local l
    l=$(grep -E '^License:' "$f" | sed 's/^License: *//' | awk '!s[$0]++' | paste -sd'/' |
        sed 's|/| / |g')
    if [ -z "$l" ]; then # not machine-readable (gnome-backgrounds): its "Licensed under" lines
        l=$( (sed -n 's/.*Licensed under \(.*\) License.*/\1/p' "$f"
            grep -q 'GNU General Public License' "$f" && echo 'GNU GPL') | awk '!s[$0]++' |
            paste -sd'/' | sed 's|/| / |g')
    fi
    echo "${l:-see the copyright file}"
}
{
    printf 'file\tpackage\tversion\tclass\tpath in the package\tpackage licences (debian/copyright)\n'
    while IFS=$'\t' read -r file path; do
        rel=${path#"$cache/x/"}
        p=${rel%%/*}
        in=/${rel#*/}
        v=
        for pv in "${packages[@]}"; do [ "${pv%%=*}" = "$p" ] && v=${pv#*=}; done
        class=$(while IFS=$'\t' read -r rp re c; do
            [ "$rp" = "$p" ] && [[ $in =~ $re ]] && { echo "$c"; break; }
        done <<<"$rules")
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$file" "$p" "$v" "$class" "${in#/}" "$(licences "$p")"
    done <"$cache/selected.tsv"
} >"$manifest"
echo "copy_eval_set: $(($(wc -l <"$manifest") - 1)) pictures in $cache/set, manifest $manifest" >&2
