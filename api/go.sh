#!/bin/sh
# GET /api/go?to=hello — redirects. `Location: /api/...` without a Status is served
# internally from that URL; an absolute URL (or a Status) is sent to the client.
case "$QUERY_STRING" in
  to=hello) printf 'Location: /api/hello?name=redirect\n\n' ;;
  to=docs) printf 'Status: 307 Temporary Redirect\nLocation: https://en.wikipedia.org/wiki/Common_Gateway_Interface\n\n' ;;
  *) printf 'Status: 400 Bad Request\nContent-Type: text/plain\n\nuse ?to=hello or ?to=docs\n' ;;
esac
