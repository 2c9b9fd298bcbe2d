# ai2in's bash driver: one persistent bash per code context. The agent sends, on fd 3,
# lines `execute ID CODE_B64 ENV_B64` (the code and `export` lines, base64); the snippet is
# sourced in this shell, so variables, functions and cd persist. Output goes to fd 1 and 2
# as usual; `done` (with the snippet's status) goes to fd 3 once the snippet returned.
# SIGINT returns from the running snippet with status 130 and the shell survives.
__ai2in_file=$(mktemp /tmp/.ai2in-bash.XXXXXX)
__ai2in_count=0
trap ':' INT
printf '{"type":"ready","language":"bash","pid":%d}\n' "$$" >&3
while IFS=' ' read -r __ai2in_type __ai2in_id __ai2in_code __ai2in_env <&3 || [ -n "$__ai2in_type" ]; do
  [ "$__ai2in_type" = execute ] || continue
  __ai2in_count=$((__ai2in_count + 1))
  eval "$(printf '%s' "$__ai2in_env" | base64 -d)"
  printf '%s' "$__ai2in_code" | base64 -d > "$__ai2in_file"
  trap 'return 130 2>/dev/null' INT
  source "$__ai2in_file" < /dev/null
  __ai2in_status=$?
  trap ':' INT
  printf '{"type":"done","id":"%s","execution_count":%d,"exit_code":%d}\n' \
    "$__ai2in_id" "$__ai2in_count" "$__ai2in_status" >&3
done
rm -f "$__ai2in_file"
