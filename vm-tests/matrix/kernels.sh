#!/usr/bin/env bash
# Fetches Debian's cloud kernel for a suite through apt, extracts it into the matrix cache and
# prints the directory it is in: vmlinuz, the modules tree and the package's name.
#
#   vm-tests/matrix/kernels.sh <cache dir> <suite>      (suite: bookworm, trixie, ...)
#
# apt is pointed at a private state directory (its own sources file, lists and archives under
# the cache), so a suite added here never becomes visible to the machine's own apt. The source
# is the machine's: the URI and Signed-By of the first entry of
# /etc/apt/sources.list.d/debian.sources, with only Suites changed. A kernel once extracted is
# reused; delete its directory (or pass --refresh to run.sh) to fetch again.
set -euo pipefail
cache=$1 suite=$2
dir=$cache/kernels/$suite
if [ -s "$dir/package" ] && [ -f "$dir/vmlinuz" ]; then
  echo "$dir"
  exit 0
fi

sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || { echo "$sources is missing: no apt source to copy" >&2; exit 1; }
# The first stanza's URIs and Signed-By.
uri=$(awk '/^URIs:/ {print $2; exit}' "$sources")
signed=$(awk '/^Signed-By:/ {print $2; exit}' "$sources")
[ -n "$uri" ] && [ -n "$signed" ] || { echo "no URIs/Signed-By in $sources" >&2; exit 1; }

apt_dir=$cache/apt/$suite
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/archives/partial"
cat >"$apt_dir/sources.list.d/matrix.sources" <<SRC
Types: deb
URIs: $uri
Suites: $suite
Components: main
Signed-By: $signed
SRC
apt_opts=(
  -o "Dir::Etc::SourceList=/dev/null"
  -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache::Archives=$apt_dir/archives"
  -o "Dir::Cache::pkgcache="
  -o "Dir::Cache::srcpkgcache="
  -o "APT::Sandbox::User=root"
)
echo "apt-get update for $suite (private lists under $apt_dir)" >&2
apt-get "${apt_opts[@]}" update -qq >&2
# The metapackage names the current image package: linux-image-<version>-cloud-amd64.
pkg=$(apt-cache "${apt_opts[@]}" depends linux-image-cloud-amd64 |
  awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$pkg" ] || { echo "$suite: linux-image-cloud-amd64 names no image package" >&2; exit 1; }
rm -rf "$dir" && mkdir -p "$dir"
(cd "$dir" && apt-get "${apt_opts[@]}" download "$pkg" >&2)
dpkg-deb -x "$dir"/"$pkg"_*.deb "$dir/root"
rm -f "$dir"/"$pkg"_*.deb
# Newer packages keep modules in /usr/lib/modules only; depmod and modprobe -d look in lib/.
[ -e "$dir/root/lib" ] || ln -s usr/lib "$dir/root/lib"
vmlinuz=$(ls "$dir"/root/boot/vmlinuz-* | head -1)
ln -sf "${vmlinuz#"$dir"/}" "$dir/vmlinuz"
echo "$pkg" >"$dir/package"
echo "$dir"
