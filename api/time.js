#!/usr/bin/env node
// GET /api/time — a Node.js script run as a CGI program (it has an execute bit and a
// #! line). Prints JSON and a custom header; the request id comes from watchdog.
const body = JSON.stringify({
  now: new Date().toISOString(),
  requestId: process.env.WATCHDOG_REQUEST_ID,
  deadlineMs: Number(process.env.WATCHDOG_DEADLINE_MS),
});
process.stdout.write(`Content-Type: application/json\nX-Powered-By: node ${process.version}\n\n${body}\n`);
