// watchdog's Node adapter: runs one Vercel-style handler module as a warm HTTP
// worker on 127.0.0.1:$PORT. Embedded in the watchdog binary and written to a
// private cache folder at start; `node adapter.mjs MODULE`.
//
// Signatures, as Vercel documents them:
//   Web standard: export function GET(request, { params }) (and POST, PUT, PATCH,
//   DELETE, HEAD, OPTIONS), export default { fetch(request) }, or a default export
//   function of one parameter, (request), returning a Response.
//   Node: export default function handler(req, res) (or module.exports = ...), with
//   req.query, req.cookies, req.body and res.status/json/send/redirect. Any other
//   default function is called this way too (a wrapper such as `(...args) =>
//   fn(...args)` declares no parameters), and a Response it returns without
//   having used `res` is sent.
//   Compiled CommonJS (`exports.default = handler` from tsc or Babel) is unwrapped,
//   as Vercel does, up to five `default` levels.
import http from 'node:http';
import net from 'node:net';
import { AsyncLocalStorage } from 'node:async_hooks';
import * as nodeModule from 'node:module';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { format } from 'node:util';
import { Script } from 'node:vm';
import { readFileSync } from 'node:fs';

const modulePath = process.argv[2];
// Absent before Node 20.6: an ES module in a CommonJS package then fails to load.
const register = nodeModule.register;
const port = Number(process.env.PORT);
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];
const requestContext = new AsyncLocalStorage();

// An Express app written for Vercel often also calls `app.listen(3000)` (or
// `$PORT`), to run by itself. Under the adapter that would open a port on every
// interface beside watchdog, outside its limits and logs, or fail with
// EADDRINUSE (on $PORT, which the adapter holds, and in every worker after the
// first); Vercel ignores it. A server the module starts listens on an ephemeral
// loopback port instead, so its callback and `server.address()` still work;
// requests reach the module through its export. A Unix socket path or an
// inherited handle is left as asked.
const listenOwn = net.Server.prototype.listen;
net.Server.prototype.listen = function listenAside(...args) {
  const first = args[0];
  const options = typeof first === 'object' && first !== null ? first : undefined;
  const asked = options ? options.port ?? options.path : first;
  const isPath = typeof asked === 'string' && !/^\d+$/.test(asked);
  if (isPath || options?.handle || options?.fd !== undefined || first?._handle) {
    return listenOwn.apply(this, args);
  }
  const callback = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
  const shown = typeof asked === 'number' || typeof asked === 'string' ? asked : '';
  // Its other options (backlog, signal, exclusive) kept; not ipv6Only, which
  // a loopback IPv4 address cannot honour.
  const { port: _port, host: _host, ipv6Only: _ipv6Only, ...kept } = options ?? {};
  const aside = { ...kept, port: 0, host: '127.0.0.1' };
  this.once('listening', () => {
    console.log(`the module's own listen(${shown}) was given 127.0.0.1:${this.address().port} instead; requests reach the module through its export`);
  });
  return callback ? listenOwn.call(this, aside, callback) : listenOwn.call(this, aside);
};

// console.* lines carry the request id, so watchdog's log ties them to a request.
for (const level of ['log', 'info', 'debug', 'warn', 'error']) {
  const stream = level === 'warn' || level === 'error' ? process.stderr : process.stdout;
  console[level] = (...args) => {
    const id = requestContext.getStore();
    const text = format(...args);
    // Split at every line end watchdog's log splits at (`\r` too), so each
    // piece carries the id.
    stream.write(text.split(/\r\n|\r|\n/).map((line) => (id ? `[${id}] ${line}` : line)).join('\n') + '\n');
  };
}

let loaded;
async function load() {
  // The module is imported once: state at module scope persists between
  // requests, as on Vercel. watchdog starts a new worker when the file changes.
  if (!loaded) loaded = importHandler(pathToFileURL(modulePath).href);
  return loaded;
}

// A `.js` file written as an ES module (`export default function handler`,
// Vercel's own template, or a helper it imports) in a package whose
// package.json says "type": "commonjs" (what `npm init -y` writes now) fails to
// load as CommonJS; Vercel compiles such files to CommonJS and runs them. Here,
// once a handler written as an ES module fails that way, loader hooks are
// registered (node:module's register, Node 20.6 and later; once, as each call
// adds a layer) and the handler is imported again: every `.js` file outside
// node_modules whose source is ES module syntax is then loaded as an ES module,
// under a URL marked `?as-module`, since Node caches a failed load under the
// plain one. Registered only on that failure, as the hooks run on a thread of
// their own. A CommonJS handler that `require`s such a file is not retried:
// hooks do not reach `require`, and its own error says what failed.
const ESM_IN_COMMONJS =
  /Unexpected token 'export'|Cannot use import statement outside a module|does not provide an export named|is a CommonJS module/;
const MODULE_SYNTAX = /^(Cannot use import statement outside a module|Unexpected token 'export'|Cannot use 'import.meta' outside a module)/;

// Whether the file at `url` is written as an ES module: a script compile
// refuses its syntax. Also part of the hooks' source, which runs on their thread.
function isWrittenAsModule(url) {
  let source;
  try { source = readFileSync(fileURLToPath(url), 'utf8'); } catch { return false; }
  try { new Script(source); return false; } catch (err) { return err instanceof SyntaxError && MODULE_SYNTAX.test(err.message); }
}

// Vercel compiles such a file to CommonJS, so what CommonJS gives a module
// works in it: relative imports resolve as `require` resolves them (no
// extension, a folder's index), and `require`, `__filename` and `__dirname`
// exist. Here the file runs as an ES module, so the hooks give it the same: a
// relative specifier Node cannot find is tried as `require` would, and the
// names the source uses without declaring them are declared ahead of it, on
// its first line, so the line numbers of its errors stay right.
const LIKE_REQUIRE = ['.js', '.mjs', '.cjs', '/index.js', '/index.mjs', '/index.cjs'];
function withCommonJsNames(source) {
  const names = {
    require: 'const require = __watchdogRequireFor(import.meta.url);',
    __filename: 'const __filename = __watchdogPathOf(import.meta.url);',
    __dirname: 'const __dirname = __watchdogFolderOf(__watchdogPathOf(import.meta.url));',
  };
  const missing = Object.entries(names).filter(([name]) => {
    const used = new RegExp(`(^|[^\\w$.])${name}(?![\\w$])`).test(source);
    const declared = new RegExp(`\\b(const|let|var|function|class)\\s+${name}(?![\\w$])|\\bimport\\b[^;]*[{,\\s]${name}(?![\\w$])`).test(source);
    return used && !declared;
  });
  if (!missing.length) return source;
  const preamble = "import { createRequire as __watchdogRequireFor } from 'node:module'; "
    + "import { fileURLToPath as __watchdogPathOf } from 'node:url'; "
    + "import { dirname as __watchdogFolderOf } from 'node:path'; "
    + missing.map(([, line]) => line).join(' ') + ' ';
  // A `#!` line must stay first.
  const at = source.startsWith('#!') ? source.indexOf('\n') + 1 : 0;
  return source.slice(0, at) + preamble + source.slice(at);
}

const ES_MODULE_HOOKS = `
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';
const MARK = 'as-module';
const MODULE_SYNTAX = ${MODULE_SYNTAX};
const LIKE_REQUIRE = ${JSON.stringify(LIKE_REQUIRE)};
${isWrittenAsModule}
${withCommonJsNames}
function isOwnScript(url) {
  if (!url.startsWith('file:')) return false;
  const path = new URL(url).pathname;
  return path.endsWith('.js') && !path.includes('/node_modules/');
}
function isMarked(url) {
  return typeof url === 'string' && url.startsWith('file:') && new URL(url).searchParams.has(MARK);
}
async function resolveLikeRequire(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    const relative = specifier.startsWith('./') || specifier.startsWith('../');
    const unfound = err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'ERR_UNSUPPORTED_DIR_IMPORT';
    if (!relative || !unfound || !isMarked(context.parentURL)) throw err;
    const base = specifier.replace(/\\/+$/, '');
    for (const ending of LIKE_REQUIRE) {
      try { return await next(base + ending, context); } catch {}
    }
    throw err;
  }
}
export async function resolve(specifier, context, next) {
  const resolved = await resolveLikeRequire(specifier, context, next);
  if (resolved.format === 'module' || !isOwnScript(resolved.url)) return resolved;
  if (!isWrittenAsModule(resolved.url)) return resolved;
  const url = new URL(resolved.url);
  url.searchParams.set(MARK, '');
  return { ...resolved, url: url.href, format: 'module' };
}
export async function load(url, context, next) {
  if (isMarked(url)) {
    const loaded = await next(url, { ...context, format: 'module' });
    const source = typeof loaded.source === 'string' ? loaded.source : Buffer.from(loaded.source).toString('utf8');
    return { ...loaded, format: 'module', source: withCommonJsNames(source) };
  }
  return next(url, context);
}`;

let hooksRegistered = false;
async function importHandler(url) {
  try {
    return await import(url);
  } catch (err) {
    const retry = err instanceof SyntaxError && typeof register === 'function'
      && ESM_IN_COMMONJS.test(err.message) && isWrittenAsModule(url);
    if (!retry) throw err;
    if (!hooksRegistered) {
      register(`data:text/javascript,${encodeURIComponent(ES_MODULE_HOOKS)}`);
      hooksRegistered = true;
    }
    return import(`${url}?as-module`);
  }
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
    // The name Vercel's ApiError gives it, for a handler that catches it.
    this.statusCode = status;
  }
}

function errorResponse(res, req, status, message) {
  if (res.headersSent) {
    // Too late for an error page: the answer is broken off, so the client sees
    // it cut short rather than whole. The socket is ended, not destroyed: what
    // the handler wrote is still corked (a write flushes on the next tick), and
    // destroying it would lose the head too. Watchdog sees the connection close
    // mid-answer from a worker that runs on, and keeps the worker.
    if (res.socket) res.socket.end();
    else res.destroy();
    return;
  }
  const id = req.headers['x-request-id'] || '';
  // Not what the handler set before it failed: a cookie, a cache lifetime or a
  // length would go out with the error page.
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  const wantsJson = /application\/(?:[\w.+-]*\+)?json/.test(req.headers.accept || '');
  res.statusCode = status;
  res.setHeader('content-type', wantsJson ? 'application/json' : 'text/plain; charset=utf-8');
  res.end(wantsJson
    ? JSON.stringify({ error: { status, message, request_id: id } }) + '\n'
    : `${status}: ${message}\nrequest id: ${id}\n`);
}

// Reads the whole body for req.body, and leaves it in req, still unread: as on
// Vercel, a handler may read the request as a stream too ('data' and 'end', `for
// await`, pipe, raw-body). Reading it out and handing it back before 'end' is what
// keeps req a live stream; once 'end' has been emitted, a handler waiting for it
// would wait until its timeout.
function readBody(req) {
  // An empty body, already complete: nothing to read, and reading would end req.
  if (req.complete && req.readableLength === 0) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    const chunks = [];
    const done = (err) => {
      req.off('readable', take);
      req.off('end', done);
      req.off('error', done);
      if (err) return reject(err);
      const body = Buffer.concat(chunks);
      // Synchronously after the last read(): 'end' is due on the next tick, and
      // does not come while data is buffered again.
      if (body.length && !req.readableEnded) req.unshift(body);
      resolve(body);
    };
    const take = () => {
      // Only what is buffered: one read() past the last byte would end the stream.
      let chunk;
      while (req.readableLength > 0 && (chunk = req.read()) !== null) chunks.push(chunk);
      if (req.complete) done();
    };
    req.on('readable', take);
    // Only if the stream ended before it could be read (an empty body).
    req.on('end', done);
    req.on('error', done);
  });
}

// Null-prototype objects, as Node's querystring.parse gives them: a key named
// like an Object.prototype member (`toString`, `constructor`, `__proto__`) is a
// value like any other, not an inherited function or the prototype itself.
function parseCookies(header) {
  const cookies = Object.create(null);
  for (const part of (header || '').split(';')) {
    const at = part.indexOf('=');
    if (at < 0) continue;
    const name = part.slice(0, at).trim();
    if (name && !(name in cookies)) {
      let value = part.slice(at + 1).trim();
      // `b="q"` is the value q (RFC 6265 allows the quotes), as the cookie package reads it.
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      try { cookies[name] = decodeURIComponent(value); } catch { cookies[name] = value; }
    }
  }
  return cookies;
}

function toQuery(searchParams, params) {
  const query = Object.create(null);
  for (const [key, value] of searchParams) {
    if (key in query) query[key] = [].concat(query[key], value);
    else query[key] = value;
  }
  return Object.assign(query, params);
}

// req.body as Vercel's helpers give it (see nodeStyle).
function parseBody(raw, contentType) {
  // Without a Content-Type Vercel does not read the body: "" (the stream still
  // holds it).
  if (contentType === undefined) return '';
  const type = contentType.split(';')[0].trim().toLowerCase();
  if (type === 'application/json') {
    const text = raw.toString('utf8');
    if (!text) return {};
    try { return JSON.parse(text); } catch { throw new HttpError(400, 'Invalid JSON'); }
  }
  if (type === 'application/octet-stream') return raw;
  // Repeated fields as arrays, as Vercel's querystring.parse gives them.
  if (type === 'application/x-www-form-urlencoded') return toQuery(new URLSearchParams(raw.toString('utf8')), {});
  if (type === 'text/plain') return raw.toString('utf8');
  return undefined;
}

// Vercel's request and response helpers, on Node's own objects.
async function nodeStyle(handler, req, res, url, params) {
  // As Vercel's helpers do, the body is read whenever a Content-Type describes
  // one, whatever the method (a GET with a JSON body has one), and for the
  // methods that carry one.
  const described = req.headers['content-type'] !== undefined;
  const raw = !described && (req.method === 'GET' || req.method === 'HEAD') ? Buffer.alloc(0) : await readBody(req);
  req.query = toQuery(url.searchParams, params);
  req.cookies = parseCookies(req.headers.cookie);
  // Parsed on first read, by Vercel's rules, so a handler written for it finds
  // what it expects: no Content-Type reads as text/plain (""), an empty JSON
  // body as {}, and a type it does not parse (text/html, multipart, +json) as
  // undefined. Assignable, as there: Express's body parsers and validation
  // middleware set req.body.
  const settle = (value) => {
    Object.defineProperty(req, 'body', { configurable: true, enumerable: true, writable: true, value });
  };
  Object.defineProperty(req, 'body', {
    configurable: true,
    enumerable: true,
    get() {
      const value = parseBody(raw, req.headers['content-type']);
      settle(value);
      return value;
    },
    set: settle,
  });
  res.status = (code) => { res.statusCode = code; return res; };
  res.json = (value) => {
    // A 204 or 304 has no body, so nothing to describe or tag one: as send().
    if (res.statusCode === 204 || res.statusCode === 304) return res.send();
    if (!res.getHeader('content-type')) res.setHeader('content-type', 'application/json; charset=utf-8');
    const text = JSON.stringify(value);
    // JSON.stringify(undefined) is undefined (`res.json(rows[0])` with no row):
    // Vercel answers an empty body, of the JSON type, untagged.
    if (text === undefined) {
      res.end();
      return res;
    }
    sayUtf8(res);
    endTagged(req, res, Buffer.from(text, 'utf8'));
    return res;
  };
  res.send = (value) => {
    if (res.statusCode === 204 || res.statusCode === 304) {
      // No body, so nothing to describe one either.
      res.removeHeader('content-type');
      res.removeHeader('content-length');
      res.end();
    } else if (Buffer.isBuffer(value)) {
      if (!res.getHeader('content-type')) res.setHeader('content-type', 'application/octet-stream');
      endTagged(req, res, value);
    } else if (value === null) {
      endTagged(req, res, Buffer.alloc(0));
    } else if (['object', 'number', 'boolean'].includes(typeof value)) {
      return res.json(value);
    } else {
      if (!res.getHeader('content-type')) res.setHeader('content-type', 'text/html; charset=utf-8');
      sayUtf8(res);
      endTagged(req, res, Buffer.from(value === undefined ? '' : String(value), 'utf8'));
    }
    return res;
  };
  res.redirect = (statusOrUrl, maybeUrl) => {
    const [status, location] = typeof statusOrUrl === 'number' ? [statusOrUrl, maybeUrl] : [307, statusOrUrl];
    res.statusCode = status;
    res.setHeader('location', location);
    res.end();
    return res;
  };
  return handler(req, res);
}

// Text goes out as UTF-8, so its type says so, as Vercel's send() makes it
// (`text/plain` → `text/plain; charset=utf-8`, another charset replaced): a
// browser reads text/plain or text/csv without one as windows-1252, and
// anything past ASCII comes out garbled.
function sayUtf8(res) {
  const type = res.getHeader('content-type');
  if (typeof type !== 'string' || !type.includes('/')) return;
  // Parameters split at the `;`s outside quotes (`boundary="a;b"` is one).
  const parts = type.match(/(?:[^;"]|"(?:[^"\\]|\\.)*")+/g) || [];
  const kept = parts
    .map((part) => part.trim())
    .filter((part, at) => part && (at === 0 || !/^charset\s*=/i.test(part)));
  res.setHeader('content-type', [...kept, 'charset=utf-8'].join('; '));
}

// res.send and res.json end with a whole body, so they tag it as Vercel's helper
// does (a weak ETag, as the `etag` package makes it: the length in hex and the
// SHA-1 in base64) unless the handler set one. A GET or HEAD whose If-None-Match
// holds that tag gets 304 and no body, as Express answers: the client's copy is
// current, and the tag alone would only be half of conditional requests.
function endTagged(req, res, body) {
  if (!res.getHeader('etag')) res.setHeader('etag', weakEtag(body));
  if (isFresh(req, res)) {
    res.statusCode = 304;
    for (const name of ['content-type', 'content-length', 'transfer-encoding']) res.removeHeader(name);
    res.end();
  } else {
    // Set, not left to Node: it counts a body it will not send (HEAD) as none,
    // and a HEAD answer must carry the GET's length.
    res.setHeader('content-length', body.length);
    res.end(body);
  }
}

function weakEtag(body) {
  const hash = createHash('sha1').update(body).digest('base64').substring(0, 27);
  return `W/"${body.length.toString(16)}-${hash}"`;
}

// RFC 9110 §13.1.2: If-None-Match compares weakly (W/ aside), `*` matches any
// current representation; only a 2xx answer to GET or HEAD becomes a 304.
function isFresh(req, res) {
  const condition = req.headers['if-none-match'];
  if (!condition || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
  if (res.statusCode < 200 || res.statusCode > 299) return false;
  if (condition.trim() === '*') return true;
  // Each entity tag whole: a quoted tag may itself hold a comma.
  const opaque = (tag) => tag.trim().replace(/^W\//, '');
  const current = opaque(String(res.getHeader('etag')));
  return (condition.match(/(?:W\/)?"[^"]*"/g) || []).some((tag) => opaque(tag) === current);
}

async function sendWebResponse(res, response, method) {
  if (!(response instanceof Response)) {
    throw new Error('the handler did not return a Response');
  }
  res.statusCode = response.status;
  for (const [name, value] of response.headers) {
    if (name === 'set-cookie') continue;
    res.setHeader(name, value);
  }
  const cookies = response.headers.getSetCookie ? response.headers.getSetCookie() : [];
  if (cookies.length) res.setHeader('set-cookie', cookies);
  // A body nobody will read (a HEAD, a client already gone while the handler
  // ran) is cancelled, so its `cancel()` runs: an SSE stream's timer stops.
  const gone = () => new Error('the client went away');
  if (!response.body || method === 'HEAD' || res.destroyed) {
    if (response.body) response.body.cancel(gone()).catch(() => {});
    if (!res.destroyed) res.end();
    return;
  }
  res.flushHeaders();
  // Read by hand rather than `for await`: a chunk waits for the last to drain
  // (a large or fast stream to a slow client was held whole in the worker's
  // memory), and a client that goes away cancels the stream, so its `cancel()`
  // runs instead of feeding a closed socket for the worker's whole life.
  const reader = response.body.getReader();
  const cancel = () => {
    if (!res.writableFinished) reader.cancel(gone()).catch(() => {});
  };
  res.once('close', cancel);
  try {
    for (;;) {
      let next;
      try {
        next = await reader.read();
      } catch (err) {
        // A stream tied to `request.signal` (a proxied fetch) errors as the
        // client leaves: that is the leaving, not the handler failing.
        if (res.destroyed) return;
        throw err;
      }
      if (next.done) break;
      if (res.destroyed) {
        cancel();
        return;
      }
      if (!res.write(next.value)) await drained(res);
    }
  } finally {
    res.off('close', cancel);
  }
  if (!res.destroyed) res.end();
}

// Resolves once `res` can take more, or is closed and never will.
function drained(res) {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

// `request.signal` aborts when the client goes away before the answer is
// sent, as on Vercel: a handler can stop work nobody will read.
function webRequest(req, res, url) {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith('x-watchdog-')) continue;
    headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  const gone = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) gone.abort(new Error('the client went away'));
  });
  const init = { method: req.method, headers, signal: gone.signal };
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    init.body = Readable.toWeb(req);
    init.duplex = 'half';
  }
  const request = new Request(url, init);
  if (init.body) req[bodyHandedToWeb] = request;
  return request;
}

// Node's server reads and drops a request body nobody read once the answer is
// sent, so the next request on the kept-alive connection can be parsed. A body
// handed to a web stream counts as read, though, and a handler that answered
// before reading it (an auth or size check) left the rest in the socket: the
// next request on that connection from watchdog waited behind it until its
// timeout. Once the answer is out, a body nobody has started to read is read
// here and dropped. One being read (a background read the handler left running,
// a body forwarded to fetch) is left to its reader.
const bodyHandedToWeb = Symbol('bodyHandedToWeb');
function dropUnreadBody(req) {
  const request = req[bodyHandedToWeb];
  if (!request || req.readableEnded || req.destroyed) return;
  if (request.bodyUsed || request.body.locked) return;
  const reader = request.body.getReader();
  (async () => {
    try {
      while (!(await reader.read()).done);
    } catch {
      // The connection went: nothing is left to drop.
    }
  })();
}

// Why the module did not load, logged once per worker (each request tries
// again). An ES module's SyntaxError has no file or line in its stack (Node
// keeps them for its own crash report), so `node --check` is asked for them.
let loadFailureReported = false;
// A CGI script (it starts with `#!`) that lost its execute bit is served
// as a handler module, and exports nothing: say what it was meant to be.
function cgiScriptHint() {
  let source = '';
  try {
    source = readFileSync(modulePath, 'utf8');
  } catch {
    return '';
  }
  const name = modulePath.slice(modulePath.lastIndexOf('/') + 1);
  return source.startsWith('#!')
    ? `; it starts with a \`#!\` line: to run it as a CGI script, \`chmod +x ${name}\``
    : '';
}

function reportLoadFailure(err) {
  if (loadFailureReported) return;
  loadFailureReported = true;
  console.error(`cannot load ${modulePath}: ${err && err.stack ? err.stack : String(err)}`);
  if (err instanceof SyntaxError && !String(err.stack).includes(modulePath)) {
    const checked = spawnSync(process.execPath, ['--check', modulePath], { encoding: 'utf8' });
    let where = (checked.stderr || '').trim();
    if (!where && /\.js$/.test(modulePath)) {
      // Node 20 passes a `.js` file whose ES module syntax it had to detect
      // (no "type": "module" beside it) without checking it: checked again as
      // a module, its source on stdin, and named by its path.
      try {
        const asModule = spawnSync(process.execPath, ['--input-type=module', '--check'], {
          input: readFileSync(modulePath),
          encoding: 'utf8',
        });
        where = (asModule.stderr || '').trim().replace(/^\[stdin\]/, modulePath);
      } catch {
        // Gone since it failed to load: the error above is all there is.
      }
    }
    if (where) console.error(where);
  }
}

// Where the handlers are: the module itself, or the `default` object compiled
// CommonJS leaves them in (`exports.default = handler`, `exports.GET = ...` read
// through `import()`, which puts `module.exports` under `default`).
function exportsOf(mod) {
  let target = mod;
  for (let depth = 0; depth < 5 && target; depth += 1) {
    if (METHODS.some((m) => typeof target[m] === 'function')) return { methods: target };
    const inner = target.default;
    if (typeof inner === 'function' || (inner && typeof inner.fetch === 'function')) {
      // `export const config` beside the default export, or a config property
      // on the exported function (CommonJS).
      return { methods: {}, fallback: inner, edge: isEdge(target.config) || isEdge(inner.config) };
    }
    target = inner && typeof inner === 'object' ? inner : undefined;
  }
  return { methods: {} };
}

// `export const config = { runtime: 'edge' }`: Vercel calls the default export
// as an Edge function, `(request, context)`, whatever its parameter count.
function isEdge(config) {
  return Boolean(config) && (config.runtime === 'edge' || config.runtime === 'experimental-edge');
}

// An Edge function's context: its route parameters, and waitUntil for work
// that outlives the answer (the worker stays up; a failure is logged).
function edgeContext(params) {
  return {
    params,
    waitUntil(promise) {
      Promise.resolve(promise).catch((err) => console.error(err && err.stack ? err.stack : String(err)));
    },
  };
}

async function handle(req, res) {
  const params = JSON.parse(req.headers['x-watchdog-params'] || '{}');
  for (const name of Object.keys(req.headers)) {
    if (name.startsWith('x-watchdog-')) delete req.headers[name];
  }
  const url = new URL(req.url, `http://${req.headers.host || 'localhost'}`);
  let mod;
  try {
    mod = await load();
  } catch (err) {
    loaded = undefined;
    if (err && err.code === 'ERR_UNKNOWN_FILE_EXTENSION' && modulePath.endsWith('.ts')) {
      throw new HttpError(500, `TypeScript handlers need Node 23.6 or newer, which strips types by default; this is Node ${process.version}`);
    }
    reportLoadFailure(err);
    throw new HttpError(500, `the module could not be loaded (${err && err.name ? err.name : 'error'}); where and why is in watchdog's log`);
  }
  const { methods, fallback, edge } = exportsOf(mod);
  const exported = METHODS.filter((m) => typeof methods[m] === 'function');
  if (exported.length) {
    mod = methods;
    const method = req.method === 'HEAD' && !mod.HEAD && mod.GET ? 'GET' : req.method;
    const handler = mod[method];
    if (typeof handler !== 'function') {
      const allow = exported.includes('GET') && !exported.includes('HEAD') ? [...exported, 'HEAD'] : exported;
      res.statusCode = 405;
      res.setHeader('allow', allow.join(', '));
      res.end();
      return;
    }
    await sendWebResponse(res, await handler(webRequest(req, res, url), { params }), req.method);
  } else if (fallback && typeof fallback.fetch === 'function') {
    await sendWebResponse(res, await fallback.fetch(webRequest(req, res, url), { params }), req.method);
  } else if (typeof fallback === 'function') {
    if (fallback.length === 1 || edge) {
      await sendWebResponse(res, await fallback(webRequest(req, res, url), edgeContext(params)), req.method);
    } else {
      const returned = await nodeStyle(fallback, req, res, url, params);
      if (returned instanceof Response && !res.headersSent && !res.writableEnded) {
        await sendWebResponse(res, returned, req.method);
      }
    }
  } else {
    throw new HttpError(500, 'the module exports no handler: export GET/POST/… functions, default { fetch }, or a default function (in CommonJS, `module.exports = (req, res) => …`)' + cgiScriptHint());
  }
}

// Node's own limit on a request head is 16 KiB, and past it Node answers a bare
// 431 of its own; watchdog reads heads up to 64 KiB and lets through what
// it read, as CGI functions and Lambda workers get it.
const server = http.createServer({ maxHeaderSize: 80 * 1024 }, (req, res) => {
  res.on('finish', () => dropUnreadBody(req));
  requestContext.run(req.headers['x-request-id'] || '', () => {
    handle(req, res).catch((err) => {
      if (err instanceof HttpError) {
        errorResponse(res, req, err.status, err.message);
        return;
      }
      if (err && err.code === 'ECONNRESET' && !req.complete) {
        // The upload broke off (watchdog logs the client as gone): not the
        // handler's fault, and no stack is worth logging.
        console.error('the request body broke off before it was whole');
        res.destroy();
        return;
      }
      if (err && err.name === 'AbortError' && res.destroyed) {
        // A handler that stopped on `request.signal`: the client left (watchdog
        // logs it as gone), and no stack is worth logging.
        console.error('the handler stopped when the client went away');
        return;
      }
      console.error(err && err.stack ? err.stack : String(err));
      errorResponse(res, req, 500, 'the handler threw an error; its stack is in watchdog\'s log');
    });
  });
});
server.keepAliveTimeout = 60_000;
listenOwn.call(server, port, '127.0.0.1', () => {
  // A promise nobody awaited that rejects (a fire-and-forget fetch), or a throw
  // in a timer callback, would end the process under Node's defaults: every
  // warm worker of the route would go, and a few of them in a minute put the
  // route into the crash-loop 503. As a thrown handler error does (CONTRACT §5),
  // it is logged with its stack and the worker serves on. Only once listening:
  // a failure to start still ends the process.
  process.on('unhandledRejection', (reason) => {
    console.error(`unhandled promise rejection: ${reason && reason.stack ? reason.stack : String(reason)}`);
  });
  process.on('uncaughtException', (err) => {
    console.error(`uncaught exception: ${err && err.stack ? err.stack : String(err)}`);
  });
});
