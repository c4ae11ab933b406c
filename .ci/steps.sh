# Sourced by .ci/run (bash). Every step runs under `timeout`: a hang fails the run with the step's name
# instead of blocking CI until its own 90-minute limit. Each step's limit is also cut to what is left of the
# run's budget (CI_BUDGET_S from the start of .ci/run), so the last step still fails with its own name.

CI_BUDGET_S="${CI_BUDGET_S:-5100}"  # 85 of CI's 90 minutes: the rest is the clone and the runner itself
CI_KILL_AFTER_S="${CI_KILL_AFTER_S:-30}"  # a step that ignores SIGTERM this long gets SIGKILL
CI_DEADLINE="$(( $(date +%s) + CI_BUDGET_S ))"

# step NAME LIMIT_S COMMAND [ARGS...]: runs COMMAND under `timeout` (its whole process group: make's pytest
# and its xdist workers too). Prints the step's time; returns the command's exit status. A step that runs
# out of time prints "CI: step 'NAME' ran out of time (N s)" and returns 124.
step() {
    local name="$1" limit="$2"
    shift 2
    local left=$(( CI_DEADLINE - $(date +%s) ))
    if (( left < limit )); then
        limit="$left"
    fi
    if (( limit <= 0 )); then
        echo "CI: step '$name' not started: the run's budget of $CI_BUDGET_S s is spent" >&2
        return 124
    fi
    echo "CI: step '$name' (limit $limit s)"
    local start rc=0
    start="$(date +%s)"
    timeout --kill-after="$CI_KILL_AFTER_S" "$limit" "$@" || rc=$?
    local took=$(( $(date +%s) - start ))
    # 124: timeout's SIGTERM ended it; 137: SIGKILL after --kill-after (also what an OOM kill gives, hence the time).
    if (( rc == 124 || (rc == 137 && took >= limit) )); then
        echo "CI: step '$name' ran out of time ($limit s)" >&2
        return 124
    fi
    if (( rc != 0 )); then
        echo "CI: step '$name' failed (exit $rc) after $took s" >&2
        return "$rc"
    fi
    echo "CI: step '$name' passed in $took s"
}
