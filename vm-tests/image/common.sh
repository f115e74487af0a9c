# Shared by the image build scripts: where the cache lives and what it is keyed by.
# shellcheck shell=bash
cache_root=${NIX_DABEI_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nix-dabei-vm}
mkdir -p "$cache_root"

kernel_abi() {
    apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: linux-image-\([0-9][^ ]*-amd64\)$/\1/p' | head -n1
}

candidate_version() { # package[/release]
    apt-cache show "$1" 2>/dev/null | sed -n 's/^Version: //p' | head -n1
}

# apt-get download into a cache folder, once per package version.
fetch_deb() { # package[/release] -> path of the .deb
    local spec=$1 dir="$cache_root/debs"
    mkdir -p "$dir"
    local name=${spec%%/*} version
    version=$(candidate_version "$spec")
    local file
    file=$(ls "$dir"/"${name}"_"${version//:/%3a}"_*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$file" ]; then
        (cd "$dir" && apt-get download -q "$spec" >&2)
        file=$(ls "$dir"/"${name}"_"${version//:/%3a}"_*.deb | head -n1)
    fi
    echo "$file"
}
