#!/bin/sh
# The capshare image's entrypoint: the first argument names a role, anything else is
# exec'd as given (so `docker run IMAGE capshare db check` or `... sh` work too).
#
#   api            the web UI and the API; never migrates nor seeds (the migrate role does)
#   worker         the task queue's worker: match runs, payments, periodic tasks (any number)
#   migrate        the schema to head, once per release, before the api and the workers
#   payments-stub  the offline payment provider (staging and demos only)
#
# Extra arguments go to the role's command. PORT and HOST choose where a server listens
# (HOST defaults to every interface, as a container needs); WEB_CONCURRENCY is the number
# of web processes per api container.
set -eu

role="${1:-api}"
if [ "$#" -gt 0 ]; then
    shift
fi

case "$role" in
    api)
        exec capshare serve --no-migrate --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" \
            --workers "${WEB_CONCURRENCY:-1}" "$@"
        ;;
    worker)
        exec capshare worker "$@"
        ;;
    migrate)
        exec capshare db upgrade "$@"
        ;;
    payments-stub)
        exec capshare payments-stub --host "${HOST:-0.0.0.0}" --port "${PORT:-8100}" "$@"
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
