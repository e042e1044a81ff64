#!/usr/bin/env bash
# Fetches the real photographs of funknn_fast.superres.photos (training mix and held-out split).
#
#   scripts/fetch_photos.sh [DEST]     # DEST defaults to $FUNKNN_PHOTOS or ~/.cache/funknn_fast/photos
#
# Downloads the Debian packages mate-backgrounds and ukui-wallpapers with `apt-get download`
# (run `apt-get update` first on a fresh machine), unpacks them with `dpkg -x` into a temporary
# folder and copies the twelve photographs of mate/nature/*.jpg (GPL-2+, authors in
# photos.MATE_PHOTOS) and the package's copyright file into DEST. ukui-wallpapers is looked at
# and not used: all of its images are drawings or 3-D renders, not photographs (see photos.py).
# Nothing is written into the repository; DEST is complete or absent (copied through DEST.tmp).
set -euo pipefail
dest="${1:-${FUNKNN_PHOTOS:-$HOME/.cache/funknn_fast/photos}}"
photos=(Aqua Blinds Dune FreshFlower Garden GreenMeadow LadyBird RainDrops Storm TwoWings Wood
        YellowFlower)
work="$(mktemp -d)"
trap 'rm -rf "$work" "$dest.tmp"' EXIT
(cd "$work" && apt-get download mate-backgrounds ukui-wallpapers)
for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/root"; done
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
for name in "${photos[@]}"; do
    cp "$work/root/usr/share/backgrounds/mate/nature/$name.jpg" "$dest.tmp/"
done
cp "$work/root/usr/share/doc/mate-backgrounds/copyright" "$dest.tmp/COPYRIGHT.mate-backgrounds"
cp "$work/root/usr/share/doc/ukui-wallpapers/copyright" "$dest.tmp/COPYRIGHT.ukui-wallpapers"
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$dest.tmp" "$dest"
echo "fetched ${#photos[@]} photographs into $dest"
