#!/usr/bin/env node
// The trivial function as a Node CGI script (a process per request).
process.stdout.write("Content-Type: text/plain\n\nhello\n");
