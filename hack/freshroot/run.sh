#!/usr/bin/env bash
# Proves the README's commands on a machine where nothing is installed: a
# minimal Debian bookworm root (debootstrap, plus git, make, gcc and
# ca-certificates), a clone of the committed HEAD in it, and `make test` run
# there in a chroot, with fresh Go module and build caches.
#
#   hack/freshroot/run.sh [--with-shared] [--as-user] [--target T] [--keep]
#
#   --with-shared  put a read-only copy of ../shared beside the clone and set
#                  CI=true, as CI runs (default: no ../shared, CI unset, as a
#                  new contributor's clone)
#   --as-user      run as a non-root user with password-less sudo (proves the
#                  sudo path of `make deps`) instead of as root
#   --target T     the make target to run (default: test)
#
# The root is built once (about a minute) and cached in $FRESHROOT_CACHE
# (default /var/cache/floodgate/freshroot); each run works on a throwaway
# overlay copy of it, so the cache stays clean. Logs of every run stay in
# $FRESHROOT_CACHE/logs. The Debian mirror is the one the host's apt uses,
# read at run time from /etc/apt/sources.list and /etc/apt/sources.list.d/.
# Needs root (debootstrap, mount, chroot). Exits with make's status.
set -euo pipefail

die() { echo "freshroot: $*" >&2; exit 1; }
say() { echo "freshroot: $*" >&2; }

with_shared=false as_user=false target=test
while [ $# -gt 0 ]; do
	case $1 in
	--with-shared) with_shared=true ;;
	--as-user) as_user=true ;;
	--target) target=${2:?--target needs a value}; shift ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
	shift
done

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, mount, chroot); run it with sudo"
repo=$(git rev-parse --show-toplevel)
head=$(git -C "$repo" rev-parse HEAD)
shared=${FRESHROOT_SHARED:-$(dirname "$repo")/shared}
cache=${FRESHROOT_CACHE:-/var/cache/floodgate/freshroot}
suite=bookworm
base=$cache/$suite
mkdir -p "$cache/logs" "$cache/runs"

if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
	say "the work tree has uncommitted changes; testing the committed HEAD ${head:0:12} only"
fi

# mirror prints the first URI that the host's apt uses for $suite, from the
# one-line format (sources.list, *.list) or deb822 (*.sources).
mirror() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v suite="$suite" '
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
				if ($(i + 1) == suite) { print $i; exit }
			}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v suite="$suite" '
			function flush() {
				if (deb && enabled && uri != "" && (" " suites " ") ~ (" " suite " ")) { print uri; found = 1 }
				deb = 0; enabled = 1; uri = ""; suites = ""
			}
			BEGIN { enabled = 1 }
			/^[ \t]*$/ { flush(); if (found) exit; next }
			/^[ \t]*#/ { next }
			tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
			tolower($1) == "uris:" { uri = $2 }
			tolower($1) == "suites:" { $1 = ""; suites = $0 }
			tolower($1) == "enabled:" { enabled = (tolower($2) != "no") }
			END { if (!found) flush() }' "$f"
	done
}

# safe_delete removes a directory only when nothing is mounted at or below
# it: deleting across a bind mount of /dev would wipe the host's /dev.
safe_delete() {
	local dir=$1
	[ -e "$dir" ] || return 0
	if findmnt -rn -o TARGET | awk -v d="$dir" '$0 == d || index($0, d "/") == 1 { found = 1 } END { exit !found }'; then
		say "NOT deleting $dir: something is still mounted below it:"
		findmnt -rn -o TARGET | awk -v d="$dir" '$0 == d || index($0, d "/") == 1' >&2
		return 1
	fi
	# --one-file-system: even a mount missed above is not crossed.
	rm -rf --one-file-system -- "$dir"
}

# stop_inside ends every process whose root is $1 or below it: SIGTERM,
# then SIGKILL for whatever is left after five seconds.
stop_inside() {
	local root=$1 sig pids p r i
	for sig in TERM KILL; do
		for i in 1 2 3 4 5 6 7 8 9 10; do
			pids=
			for p in /proc/[0-9]*; do
				r=$(readlink "$p/root" 2>/dev/null) || continue
				case $r in "$root" | "$root"/*) pids="$pids ${p#/proc/}" ;; esac
			done
			[ -n "$pids" ] || return 0
			[ "$i" = 1 ] && say "SIG$sig to processes left in the root:$pids"
			# shellcheck disable=SC2086
			kill -s "$sig" $pids 2>/dev/null || true
			sleep 0.5
		done
	done
	say "processes still in the root after SIGKILL:$pids"
	return 1
}

# unmount_below unmounts everything at or below $1, deepest first; a busy
# mount gets a lazy unmount.
unmount_below() {
	local dir=$1 m
	findmnt -rn -o TARGET | awk -v d="$dir" '$0 == d || index($0, d "/") == 1' | sort -r |
		while read -r m; do
			umount "$m" 2>/dev/null || { say "umount $m failed; lazy unmount"; umount -l "$m"; }
		done
}

# build_base makes the cached root once: debootstrap into a temporary
# directory, then a rename, so a half-built root is never used.
build_base() {
	exec 9>"$cache/.lock"
	flock 9
	[ -f "$base/.freshroot-ok" ] && return 0
	if ! command -v debootstrap >/dev/null; then
		say "installing debootstrap with apt-get"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	fi
	local tmp=$cache/$suite.tmp
	safe_delete "$tmp" || die "cannot clear $tmp"
	safe_delete "$base" || die "cannot clear $base"
	say "building a minimal $suite root in $base (once; about a minute)"
	# libc6-dev is what `apt-get install gcc` brings as a recommendation
	# (debootstrap installs no recommendations); cgo and -race need it.
	if ! debootstrap --variant=minbase --include=git,make,gcc,libc6-dev,ca-certificates \
		"$suite" "$tmp" "$url" >"$cache/logs/debootstrap.log" 2>&1; then
		tail -20 "$cache/logs/debootstrap.log" >&2
		unmount_below "$tmp"
		die "debootstrap failed; the whole log is $cache/logs/debootstrap.log"
	fi
	unmount_below "$tmp"
	apt-get -o RootDir="$tmp" clean 2>/dev/null || rm -rf "$tmp"/var/cache/apt/archives/*.deb
	touch "$tmp/.freshroot-ok"
	mv "$tmp" "$base"
	flock -u 9
}

url=$(mirror | head -1)
[ -n "$url" ] || die "no '$suite' source in /etc/apt/sources.list or /etc/apt/sources.list.d/"
build_base

run=$(realpath "$(mktemp -d "$cache/runs/run.XXXXXX")")
root=$run/root
mode=$([ "$with_shared" = true ] && echo shared-ci || echo no-shared)$([ "$as_user" = true ] && echo -user || echo -root)
log=$cache/logs/$(date -u +%Y%m%dT%H%M%SZ)-$mode.log

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_inside "$root" || true
	unmount_below "$root"
	safe_delete "$run" || { say "left $run in place; unmount what is listed above, then delete it"; rc=1; }
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$run/upper" "$run/work" "$root"
mount -t overlay overlay -o "lowerdir=$base,upperdir=$run/upper,workdir=$run/work" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys" 2>/dev/null || { mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"; }
# Bind mounts are made slaves so that nothing mounted or unmounted below them
# here ever propagates to the host's /dev.
mount --bind /dev "$root/dev" && mount --make-slave "$root/dev"
mount --bind /dev/pts "$root/dev/pts" && mount --make-slave "$root/dev/pts"

# What a machine here has that a Debian install does not: the mirror, the
# extra CA certificates, apt's tolerance of old Release files, DNS, Go and its
# proxy settings.
# The host's sources on the mirror's server (Debian's suites and its security
# updates), not third-party ones whose keys the root lacks.
rm -f "$root/etc/apt/sources.list"
server=$(printf '%s\n' "$url" | sed -E 's#^([a-z+]+://[^/]+).*#\1#')
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
	if [ -f "$f" ] && grep -qF "$server" "$f"; then cp "$f" "$root$f"; fi
done
grep -lis 'Check-Valid-Until' /etc/apt/apt.conf.d/* 2>/dev/null | xargs -r grep -li 'false' |
	xargs -r cp -t "$root/etc/apt/apt.conf.d/"
if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
	cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
	chroot "$root" update-ca-certificates >/dev/null 2>&1
fi
rm -f "$root/etc/resolv.conf" && cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# debootstrap writes no /etc/hosts; Debian's installer writes this one (sudo
# wants to resolve the host's name).
[ -e "$root/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
	"$(hostname)" >"$root/etc/hosts"
goroot=$(go env GOROOT 2>/dev/null || echo /usr/local/go)
[ -x "$goroot/bin/go" ] || die "no Go toolchain found (go env GOROOT: $goroot)"
mkdir -p "$root/usr/local/go" && cp -a "$goroot/." "$root/usr/local/go/"
echo 'case ":$PATH:" in *:/usr/local/go/bin:*) ;; *) PATH=$PATH:/usr/local/go/bin ;; esac' \
	>"$root/etc/profile.d/go.sh"
goenv=()
for v in GOPROXY GOSUMDB GONOSUMDB GOFLAGS; do
	goenv+=("$v=$(go env "$v")")
done

if [ "$as_user" = true ]; then
	say "installing sudo in the copy and adding user dev (password-less sudo)"
	chroot "$root" env DEBIAN_FRONTEND=noninteractive sh -c \
		'apt-get update -qq && apt-get install -y -qq sudo passwd >/dev/null' >"$run/apt.log" 2>&1 ||
		{ cat "$run/apt.log" >&2; die "installing sudo in the copy failed"; }
	chroot "$root" useradd -m -s /bin/bash dev
	echo 'dev ALL=(ALL) NOPASSWD: ALL' >"$root/etc/sudoers.d/dev" && chmod 440 "$root/etc/sudoers.d/dev"
	home=/home/dev userspec=(--userspec=dev:dev)
else
	home=/root userspec=()
fi

# The committed tree, not the work tree: a clone of HEAD.
git clone -q --no-checkout "$repo" "$root$home/src/floodgate"
git -C "$root$home/src/floodgate" checkout -q --detach "$head"
ci=()
if [ "$with_shared" = true ]; then
	[ -d "$shared" ] || die "--with-shared: no $shared"
	cp -r "$shared" "$root$home/src/shared"
	chmod -R a-w "$root$home/src/shared"
	ci=(CI=true)
fi
if [ "$as_user" = true ]; then
	chroot "$root" chown dev:dev "$home/src"
	chroot "$root" chown -R dev:dev "$home/src/floodgate"
fi

say "make $target in a fresh $suite root ($mode, HEAD ${head:0:12}); log: $log"
start=$(date +%s)
set +e
chroot "${userspec[@]}" "$root" env -i HOME="$home" USER="$(basename "$home")" LANG=C.UTF-8 TERM=dumb \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${goenv[@]}" "${ci[@]}" \
	bash -lc "cd ~/src/floodgate && make $target" </dev/null >"$log" 2>&1 &
# In the background so that a signal to this script runs cleanup at once
# (bash defers traps until a foreground child ends; wait returns early).
wait $!
status=$?
set -e
elapsed=$(($(date +%s) - start))
echo "----- last 40 lines of $log -----"
tail -n 40 "$log"
echo "-----"
if [ "$status" = 0 ]; then
	say "make $target passed in a fresh root ($mode) in ${elapsed}s"
else
	say "make $target FAILED (exit $status) in a fresh root ($mode) after ${elapsed}s; log: $log"
fi
exit "$status"
