#!/bin/sh
# GET /api/hello?name=Ada — the smallest function: headers, a blank line, the body.
# The query string arrives raw in QUERY_STRING; this picks out `name` with sed.
name=$(printf '%s' "$QUERY_STRING" | sed -n 's/.*\(^\|&\)name=\([^&]*\).*/\2/p' | sed 's/+/ /g')
printf 'Content-Type: text/plain; charset=utf-8\n\n'
printf 'Hello, %s!\n' "${name:-world}"
