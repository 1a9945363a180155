# shellcheck shell=bash
# Sourced by scripts/demo.sh and scripts/test.sh: make sure every Debian 12
# package sockmig needs is installed. As root, install what is missing; as
# anyone else, name what is missing and stop.

SOCKMIG_DEB_PACKAGES=(
	gcc make pkg-config  # build
	clang libclang-rt-14-dev  # second compiler, libFuzzer + sanitizers
	libmnl-dev  # rtnetlink: links, addresses (lab, address moves)
	libnftnl-dev libnftables-dev  # nftables: freezing flows
	nftables  # nft, to show rules in tests and by hand
	libsodium-dev  # image integrity (BLAKE2b), the cluster channel (kx, secretstream, kdf)
	libcmocka-dev  # unit tests
	iproute2  # ip, ss: what tests compare against
	socat python3 procps psmisc  # real programs and tools used by tests
)

sockmig_missing_packages() {
	local p
	for p in "${SOCKMIG_DEB_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
			printf '%s\n' "$p"
	done
}

sockmig_ensure_deps() {
	local missing
	missing=$(sockmig_missing_packages | tr '\n' ' ')
	[ -z "${missing// /}" ] && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "sockmig: missing Debian packages: $missing; run this as root to install them, or: apt-get install $missing" >&2
		return 1
	fi
	echo "sockmig: installing Debian packages: $missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2 || return 1
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >&2 || return 1
}
