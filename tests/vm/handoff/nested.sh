# shellcheck shell=bash
# VMs nested in the test VM: qemu (TCG) booting the test VM's own kernel with a busybox initramfs
# (tests/vm/prepare's nested-initrd.gz plus tests/vm/handoff/inner-init), each driven over its
# serial console (a line protocol, see inner-init) and QMP (qmp.py). Several may run at once; each
# has a NAME. Sourced by a script running with `set -euo pipefail` after vm-lib.sh (vm_log,
# vm_fail, vm_problem).
#
#   nested_init DIR                   the kernel, and the initramfs built into DIR
#   nested_start NAME QEMU-ARGS...    starts qemu (machine and devices; serial and QMP are added)
#   nested_wait_ready NAME SECS       waits for the guest's /init; sets nested_boot_ms
#   nested_run NAME SECS CMD          runs CMD (sh) in the guest; returns its status, its output
#                                     lines are in nested_lines; fails the test on a timeout
#   nested_qmp NAME ARGS...           qmp.py on that VM's QMP socket (see qmp.py)
#   nested_stop NAME                  QMP quit, waits for qemu to exit
#   nested_kill_all                   kills every qemu still running (for an EXIT hook)
#   nested_ms_since T                 milliseconds since T, an $EPOCHREALTIME value
#   nested_secs MS                    MS as seconds with 3 decimals
#
# Every line a guest prints goes to DIR/NAME.console (after the seconds since its qemu started)
# and, as "  NAME| line", to stdout; protocol markers only to the file.

nested_here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
declare -gA nested_pid=() nested_in=() nested_out=() nested_nonce=() nested_t0=() nested_seq=()
declare -gA nested_partial=()
nested_lines=()
nested_match=
nested_boot_ms=

# Kernel command line for the nested guests. Under nested TCG the guest runs ~50x slower than under
# plain TCG, so a boot takes minutes; the initcalls listed here are of no use to a guest that only
# mounts a disk and took about 18 s of such a boot together (measured with initcall_debug).
nested_blacklist=crypto_kdf108_init,init_kprobe_trace,cubictcp_register,inet6_init,slab_sysfs_init
nested_blacklist+=,load_system_certificate_list,trace_eval_init,cmos_init,hugetlb_init

nested_init() {
  nested_dir=$1
  local boot
  mkdir -p "$nested_dir/initramfs"
  # The test VM's boot files (tests/vm/run had prepare build them: this only reads its link).
  boot=$("$nested_here/../prepare") || vm_fail "tests/vm/prepare found no boot files"
  nested_kernel=$boot/kernel
  [ -f "$boot/nested-initrd.gz" ] || vm_fail "$boot/nested-initrd.gz missing"
  # The kernel unpacks concatenated cpio archives one after the other: the base, then our /init.
  cp "$nested_here/inner-init" "$nested_dir/initramfs/init"
  chmod 755 "$nested_dir/initramfs/init"
  cp "$boot/nested-initrd.gz" "$nested_dir/initrd.gz"
  (cd "$nested_dir/initramfs" && echo init | cpio -o -H newc -R 0:0 --quiet | gzip -1) \
    >>"$nested_dir/initrd.gz"
  # microvm boots reliably only with the TSC frequency given (without it ~2 boots in 3 hung).
  nested_tsc_khz=$(awk '/^cpu MHz/ { printf "%d", $4 * 1000; exit }' /proc/cpuinfo)
}

nested_start() {
  local name=$1 d=$nested_dir/$1 fd_in fd_out
  shift
  rm -rf "$d"
  mkdir -p "$d"
  : >"$nested_dir/$name.console"
  nested_nonce[$name]=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
  mkfifo "$d/serial.in" "$d/serial.out"
  # Read-write opens: neither side blocks waiting for the other, and no end sees EOF early.
  exec {fd_in}<>"$d/serial.in" {fd_out}<>"$d/serial.out"
  nested_in[$name]=$fd_in
  nested_out[$name]=$fd_out
  nested_seq[$name]=0
  nested_partial[$name]=
  local cmdline="console=ttyS0 quiet panic=-1 oops=panic cryptomgr.notests rcupdate.rcu_expedited=1"
  cmdline+=" mitigations=off init_on_alloc=0 tsc_early_khz=$nested_tsc_khz"
  cmdline+=" initcall_blacklist=$nested_blacklist"
  cmdline+=" thinsnap.nonce=${nested_nonce[$name]}"
  local cmd=(qemu-system-x86_64 -name "$name" -nodefaults -no-user-config -display none -no-reboot
    -accel tcg -cpu max -smp 1 -m 256M "$@"
    -kernel "$nested_kernel" -initrd "$nested_dir/initrd.gz" -append "$cmdline"
    -chardev "pipe,id=ser,path=$d/serial" -serial chardev:ser
    -qmp "unix:$d/qmp.sock,server=on,wait=off")
  vm_log "$name: starting ${cmd[*]}"
  nested_t0[$name]=$EPOCHREALTIME
  "${cmd[@]}" </dev/null >"$d/qemu.out" 2>"$d/qemu.err" &
  nested_pid[$name]=$!
}

nested_ms_since() {
  local now=$EPOCHREALTIME
  echo $(((${now/./} - ${1/./}) / 1000))
}

nested_secs() {
  printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000))
}

# nested_fail NAME MSG: ends the test loudly, with the VM's last console lines and qemu's stderr.
nested_fail() {
  local name=$1
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  echo "!!! nested VM $name: $2"
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  echo "--- last lines of its console ($nested_dir/$name.console) ---"
  tail -n 30 "$nested_dir/$name.console" || true
  if [ -s "$nested_dir/$name/qemu.err" ]; then
    echo "--- qemu stderr ---"
    cat "$nested_dir/$name/qemu.err"
  fi
  vm_fail "nested VM $name: $2"
}

# nested_read_until NAME PATTERN SECS WHAT: reads console lines until one matches PATTERN (a glob),
# collecting the others in nested_lines; fails the test on a timeout ("WHAT within SECS s") or when
# qemu exits.
nested_read_until() {
  local name=$1 pattern=$2 deadline=$((${EPOCHREALTIME/./} + $3 * 1000000)) line rc ms
  nested_lines=()
  while :; do
    rc=0
    IFS= read -r -t 1 -u "${nested_out[$name]}" line || rc=$?
    if [ "$rc" -gt 128 ]; then
      # A timeout keeps what came of a line so far.
      nested_partial[$name]+=$line
      kill -0 "${nested_pid[$name]}" 2>/dev/null || nested_fail "$name" "qemu exited before $4"
      [ "${EPOCHREALTIME/./}" -le "$deadline" ] || nested_fail "$name" "$4 within $3 s"
      continue
    fi
    [ "$rc" -eq 0 ] || nested_fail "$name" "reading its console failed ($rc)"
    line=${nested_partial[$name]}$line
    nested_partial[$name]=
    line=${line%$'\r'}
    ms=$(nested_ms_since "${nested_t0[$name]}")
    echo "$(nested_secs "$ms") $line" >>"$nested_dir/$name.console"
    # shellcheck disable=SC2053 # PATTERN is a glob on purpose
    if [[ "$line" == $pattern ]]; then
      nested_match=$line
      return 0
    fi
    if [[ "$line" == *"@@ERROR ${nested_nonce[$name]} "* ]]; then
      nested_fail "$name" "guest: ${line#*@@ERROR "${nested_nonce[$name]}" }"
    fi
    echo "  $name| $line"
    nested_lines+=("$line")
  done
}

nested_wait_ready() {
  # A guest that hangs at boot prints nothing (quiet): the timeout is the only sign. microvm under
  # TCG hung in about 2 boots of 3 without tsc_early_khz; none of about 20 here has with it.
  nested_read_until "$1" "*@@READY ${nested_nonce[$1]} *" "$2" \
    "BOOT FAILED: the guest did not reach its /init (a boot hang?)"
  nested_boot_ms=$(nested_ms_since "${nested_t0[$1]}")
  vm_log "$1: guest /init ready $(nested_secs "$nested_boot_ms") s after qemu started"
}

nested_run() {
  local name=$1 seq t0=$EPOCHREALTIME rc
  seq=$((nested_seq[$name] + 1))
  nested_seq[$name]=$seq
  # One line on the wire: a command written over several lines (after && or |) still parses.
  echo "$seq ${3//$'\n'/ }" >&"${nested_in[$name]}"
  nested_read_until "$name" "*@@DONE ${nested_nonce[$name]} $seq rc=*" "$2" "no answer to command $seq"
  rc=${nested_match##*rc=}
  echo "  $name: command $seq: status $rc after $(nested_secs "$(nested_ms_since "$t0")") s"
  return "$rc"
}

nested_qmp() {
  local name=$1
  shift
  python3 "$nested_here/qmp.py" "$nested_dir/$name/qmp.sock" "$@"
}

nested_stop() {
  local name=$1 pid=${nested_pid[$1]} fd_in=${nested_in[$1]} fd_out=${nested_out[$1]} rc=0 _
  nested_qmp "$name" quit >/dev/null || true
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && nested_fail "$name" "qemu did not exit within 30 s of QMP quit"
  wait "$pid" || rc=$?
  unset "nested_pid[$name]"
  exec {fd_in}>&- {fd_out}<&-
  [ "$rc" -eq 0 ] || vm_problem "nested VM $name: qemu exited $rc: $(cat "$nested_dir/$name/qemu.err")"
}

nested_kill_all() {
  local name
  for name in "${!nested_pid[@]}"; do
    kill "${nested_pid[$name]}" 2>/dev/null || true
    wait "${nested_pid[$name]}" 2>/dev/null || true
  done
  nested_pid=()
}
