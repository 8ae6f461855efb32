#!/usr/bin/env bash
# Run a command with the machine's background work paused, for timings.
#
#   benchmarks/quiet_machine.sh CMD [ARGS...]
#
# Pauses (SIGSTOP) every process of this user that is background work:
# command lines matching $QUIET_PATTERN (default: `mtools train`, the
# training runs), and niced (nice > 0) Python processes (corpus builds and
# their worker pools run niced), never this script or its ancestors. Runs
# CMD, then resumes (SIGCONT) exactly the processes it paused: on normal
# exit, on failure and on Ctrl-C/TERM (a trap). If this script is killed
# outright (kill -9), a detached watchdog resumes them after $QUIET_MAX_S
# seconds (default 1800). With nothing running in the background it just
# runs CMD. Exits with CMD's status.
#
# CMD sees QUIET_MACHINE_PAUSED="N: pid name, ..." so a benchmark can record
# what was paused. Paused jobs lose the wall-clock time they spend stopped
# (a run limited by --max-minutes gets that much less training).
set -u

QUIET_PATTERN="${QUIET_PATTERN:-mtools train}"
QUIET_MAX_S="${QUIET_MAX_S:-1800}"

if [[ $# -eq 0 ]]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

ancestors() {  # this shell and every process above it
    local pid=$$
    while [[ -n "$pid" && "$pid" != 0 ]]; do
        echo "$pid"
        pid=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    done
}

background_pids() {  # pid<TAB>command line of each process to pause
    local keep self_uid pid args stat fields
    keep=" $(ancestors | tr '\n' ' ') "
    self_uid=$(id -u)
    for dir in /proc/[0-9]*; do
        pid=${dir#/proc/}
        [[ "$keep" == *" $pid "* ]] && continue
        [[ "$(stat -c %u "$dir" 2>/dev/null)" == "$self_uid" ]] || continue
        args=$(tr '\0' ' ' < "$dir/cmdline" 2>/dev/null) || continue
        [[ -n "$args" ]] || continue  # kernel threads have no command line
        stat=$(<"$dir/stat") 2>/dev/null || continue
        read -ra fields <<< "${stat##*) }"  # fields from the 3rd on; nice is the 19th
        if [[ "$args" =~ $QUIET_PATTERN ]] \
                || { [[ "${fields[16]:-0}" -gt 0 ]] && [[ "$args" == *python* ]]; }; then
            printf '%s\t%s\n' "$pid" "${args:0:50}"
        fi
    done
}

paused=()
names=()
while IFS=$'\t' read -r pid name; do
    [[ -n "$pid" ]] || continue
    if kill -STOP "$pid" 2>/dev/null; then
        paused+=("$pid")
        names+=("$pid ${name% }")
    fi
done < <(background_pids)

watchdog=""
resume() {
    if [[ ${#paused[@]} -gt 0 ]]; then
        kill -CONT "${paused[@]}" 2>/dev/null
        echo "quiet_machine: resumed ${#paused[@]} background process(es)" >&2
        paused=()
    fi
    if [[ -n "$watchdog" ]]; then
        kill -- "-$watchdog" 2>/dev/null  # the watchdog's own process group
        watchdog=""
    fi
}
trap resume EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if [[ ${#paused[@]} -gt 0 ]]; then
    setsid bash -c "sleep $QUIET_MAX_S; kill -CONT ${paused[*]} 2>/dev/null" </dev/null >/dev/null 2>&1 &
    watchdog=$!
    summary=$(printf "%s; " "${names[@]}"); summary=${summary%; }
    echo "quiet_machine: paused ${#paused[@]} background process(es): $summary" >&2
    sleep 1  # let the cores settle
else
    summary=""
fi
export QUIET_MACHINE_PAUSED="${#paused[@]}${summary:+: $summary}"

"$@"
