#!/usr/bin/env bash
# Prepares what the Soft-RoCE VM boots: a stock Debian kernel (which has rdma_rxe) and a
# small initramfs (busybox, the kernel modules for virtio/9p/rxe, iproute2's ip and rdma).
# The guest's user space is the host's own root filesystem, shared read-only over 9p, so
# nothing from the project is copied into the image.
#
# Usage: prepare-image.sh <cache dir>
# Prints two lines on stdout: "kernel=<path>" and "initrd=<path>". Everything else goes to
# stderr. Exits non-zero, saying why, when the kernel cannot be resolved or fetched.
#
# Work is cached under <cache dir>: the kernel package is downloaded and unpacked once per
# version, and the initramfs is rebuilt only when one of its inputs changed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${1:?usage: prepare-image.sh <cache dir>}
mkdir -p "$cache"

say() { echo "rdma-vm: $*" >&2; }
die() { echo "rdma-vm: FAIL: $*" >&2; exit 2; }

# Modules the guest loads (their dependencies are added from modules.dep):
#   virtio_pci 9pnet_virtio 9p - reach the host's filesystems over virtio-9p
#   rdma_rxe ib_uverbs         - Soft-RoCE and the user-space verbs interface
#   crc32_generic              - the RoCE v2 ICRC that rxe computes
#   dummy veth                 - network devices to bind rxe to
#   bridge                     - the switch that joins the multi-host test's hosts
guest_modules=(virtio_pci 9pnet_virtio 9p rdma_rxe ib_uverbs crc32_generic dummy veth bridge)
# iproute2 tools needed before the guest switches to the host root.
guest_tools=(/usr/sbin/ip /usr/bin/rdma)

# --- 1. The kernel: the package that linux-image-amd64 currently points to. ----------
# (The package name changes with every Debian security update, so it is never hard-coded;
# the `cloud-amd64` flavour lacks rdma_rxe, hence the generic `amd64` one.)
kernel_package=$(apt-cache depends linux-image-amd64 2>/dev/null |
  awk '/Depends: linux-image-[0-9]/ { print $2; exit }' || true)
if [[ -z "$kernel_package" ]]; then
  die "cannot resolve the current Debian kernel package: 'apt-cache depends linux-image-amd64' names none (run apt-get update?)"
fi
kernel_release=${kernel_package#linux-image-}
kernel_root="$cache/kernel/$kernel_release"
kernel_image="$kernel_root/boot/vmlinuz-$kernel_release"

if [[ ! -f "$kernel_root/.unpacked" ]]; then
  mkdir -p "$cache/downloads"
  deb=$(find "$cache/downloads" -maxdepth 1 -name "${kernel_package}_*_amd64.deb" -print -quit)
  if [[ -z "$deb" ]]; then
    say "downloading $kernel_package (once; ~70 MB)"
    # As root, apt would hand the download to its unprivileged _apt user, which cannot
    # write into the cache; download as root directly instead.
    sandbox=()
    [[ $(id -u) -eq 0 ]] && sandbox=(-o APT::Sandbox::User=root)
    (cd "$cache/downloads" && apt-get "${sandbox[@]}" download "$kernel_package" >&2) ||
      die "apt-get download $kernel_package failed (no network? stale apt lists: run apt-get update)"
    deb=$(find "$cache/downloads" -maxdepth 1 -name "${kernel_package}_*_amd64.deb" -print -quit)
    [[ -n "$deb" ]] || die "apt-get download $kernel_package produced no .deb"
  fi
  say "unpacking $(basename "$deb")"
  rm -rf "$kernel_root"
  mkdir -p "$kernel_root"
  dpkg -x "$deb" "$kernel_root" || die "dpkg -x $deb failed"
  # Newer kernels ship compressed modules; busybox's modprobe wants plain ones.
  while IFS= read -r -d '' module; do xz -d "$module"; done < <(find "$kernel_root/lib/modules" -name '*.ko.xz' -print0)
  while IFS= read -r -d '' module; do zstd -q -d --rm "$module"; done < <(find "$kernel_root/lib/modules" -name '*.ko.zst' -print0)
  depmod -b "$kernel_root" "$kernel_release" || die "depmod for $kernel_release failed"
  touch "$kernel_root/.unpacked"
  # Older kernels are of no further use.
  find "$cache/kernel" -mindepth 1 -maxdepth 1 ! -name "$kernel_release" -exec rm -rf {} +
  find "$cache/downloads" -maxdepth 1 -name 'linux-image-*.deb' ! -name "${kernel_package}_*" -delete
fi
[[ -f "$kernel_image" ]] || die "the kernel package $kernel_package has no $kernel_image"

# --- 2. The initramfs, rebuilt only when its inputs change. -------------------------
initrd="$cache/initramfs-$kernel_release.cpio.gz"
stamp_file="$initrd.inputs"
busybox=/bin/busybox
[[ -x "$busybox" ]] || die "$busybox is missing (install busybox-static)"
# ldd fails on a static executable, which is what the initramfs needs.
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is not static (install busybox-static)"; fi
for tool in "${guest_tools[@]}"; do [[ -x "$tool" ]] || die "$tool is missing (install iproute2)"; done

inputs=$({
  echo "kernel=$kernel_release modules=${guest_modules[*]}"
  sha256sum "$here/guest-init.sh" "$here/prepare-image.sh" "$busybox" "${guest_tools[@]}"
})
if [[ -f "$initrd" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$inputs" ]]; then
  say "initramfs is up to date ($(basename "$initrd"))"
else
  say "building $(basename "$initrd")"
  staging="$cache/initramfs-root"
  rm -rf "$staging"
  mkdir -p "$staging"/{bin,sbin,proc,sys,dev,tmp,host,usr/lib,usr/lib64,usr/bin,usr/sbin}
  ln -s usr/lib "$staging/lib"
  ln -s usr/lib64 "$staging/lib64"

  cp "$busybox" "$staging/bin/busybox"
  for applet in $("$busybox" --list); do
    [[ -e "$staging/bin/$applet" ]] || ln -s busybox "$staging/bin/$applet"
  done

  module_dir="lib/modules/$kernel_release"
  mkdir -p "$staging/$module_dir"
  for module in "${guest_modules[@]}"; do
    modprobe -d "$kernel_root" -S "$kernel_release" --show-depends "$module" ||
      die "module $module is not in $kernel_package"
  done | awk '$1 == "insmod" { print $2 }' | sort -u | while read -r path; do
    relative=${path#"$kernel_root"/}
    mkdir -p "$staging/$(dirname "$relative")"
    cp "$path" "$staging/$relative"
  done
  cp "$kernel_root/$module_dir"/modules.{order,builtin,builtin.modinfo} "$staging/$module_dir/"
  depmod -b "$staging" "$kernel_release"

  # iproute2 with its shared libraries (it runs before the switch to the host root).
  for tool in "${guest_tools[@]}"; do
    cp -L "$tool" "$staging$tool"
    ldd "$tool" | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }' | while read -r library; do
      mkdir -p "$staging$(dirname "$library")"
      cp -L "$library" "$staging$library"
    done
  done

  install -m 0755 "$here/guest-init.sh" "$staging/init"
  (cd "$staging" && find . | cpio -o -H newc --quiet | gzip -1) > "$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
  printf '%s\n' "$inputs" > "$stamp_file"
  rm -rf "$staging"
  say "built $(basename "$initrd") ($(du -h "$initrd" | cut -f1))"
fi

echo "kernel=$kernel_image"
echo "initrd=$initrd"
