#!/usr/bin/env bash
# Fetches the real photographs of funknn_fast.superres.photos (training mixes and held-out split).
#
#   scripts/fetch_photos.sh [DEST]     # DEST defaults to $FUNKNN_PHOTOS or ~/.cache/funknn_fast/photos
#
# Downloads Debian packages with `apt-get download` (run `apt-get update` first on a fresh
# machine; about 130 MB in all), unpacks them with `dpkg -x` into a temporary folder and copies
# into DEST:
#   - mate-backgrounds: the twelve photographs of mate/nature/*.jpg (GPL-2+, authors in
#     photos.MATE_PHOTOS);
#   - lomiri-wallpapers-16.04 / -20.04 and plasma-workspace-wallpapers: the 21 photographs of
#     photos.EXTRA_PHOTOS (licences per file there; plasma ones renamed plasma-NAME.jpg);
#   - every package's copyright file (COPYRIGHT.<package>).
# ukui-wallpapers is looked at and not used: all of its images are drawings or 3-D renders (see
# photos.py); so are the images of the other packages that EXTRA_PHOTOS leaves out.
# Nothing is written into the repository; DEST is complete or absent (copied through DEST.tmp).
set -euo pipefail
dest="${1:-${FUNKNN_PHOTOS:-$HOME/.cache/funknn_fast/photos}}"
mate=(Aqua Blinds Dune FreshFlower Garden GreenMeadow LadyBird RainDrops Storm TwoWings Wood
      YellowFlower)
lomiri=(aitzgorri_by_Aitzol_Berasategi Bridge_by_Sander_Klootwijk Dragonfly_by_Bolly
        free_by_Peter_Nerlich friends_by_Aitzol_Berasategi greentock_by_Peter_Nerlich
        life_by_Aitzol_Berasategi picosdeeuropa_by_Aitzol_Berasategi Picture_0B_by_freespace
        Picture_1A_by_freespace seeding_by_Clements_Engelhardt sunset_by_Aitzol_Berasategi
        Wine_by_Jakkub_Mede Kleiber_by_Lukas_Baubkus)
plasma=(BytheWater ColorfulCups EveningGlow FallenLeaf Grey OneStandsOut Path)
packages=(mate-backgrounds ukui-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04
          plasma-workspace-wallpapers)
work="$(mktemp -d)"
trap 'rm -rf "$work" "$dest.tmp"' EXIT
(cd "$work" && apt-get download "${packages[@]}")
for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/root"; done
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
for name in "${mate[@]}"; do
    cp "$work/root/usr/share/backgrounds/mate/nature/$name.jpg" "$dest.tmp/"
done
for name in "${lomiri[@]}"; do
    cp "$work/root/usr/share/backgrounds/$name.jpg" "$dest.tmp/"
done
for name in "${plasma[@]}"; do
    cp "$work/root/usr/share/wallpapers/$name/contents/images/2560x1600.jpg" \
       "$dest.tmp/plasma-$name.jpg"
done
for package in "${packages[@]}"; do
    cp "$work/root/usr/share/doc/$package/copyright" "$dest.tmp/COPYRIGHT.$package"
done
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$dest.tmp" "$dest"
echo "fetched $(( ${#mate[@]} + ${#lomiri[@]} + ${#plasma[@]} )) photographs into $dest"
