#!/bin/sh
# GET /api/events — server-sent events: each line reaches the client as it is written.
printf 'Content-Type: text/event-stream\nCache-Control: no-cache\n\n'
for i in 1 2 3 4 5; do
  printf 'data: tick %s\n\n' "$i"
  sleep 0.2
done
