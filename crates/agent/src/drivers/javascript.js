// ai2in's JavaScript driver: one persistent vm context per code context, driven by the
// agent over fd 3 with newline-delimited JSON (see crates/agent/src/kernels.rs). Top-level
// let/const/function declarations persist between runs (a re-declared let/const is an
// error, as in a browser console); the completion value of the code is the main result;
// code using `await` runs inside an async function (its last expression is still returned
// when it is a plain expression statement). SIGINT interrupts synchronous loops.
'use strict';
const net = require('net');
const vm = require('vm');
const util = require('util');
const { Writable } = require('stream');
const { Console } = require('console');

const sock = new net.Socket({ fd: 3, readable: true, writable: true });
let current = null;
const send = (msg) => sock.write(JSON.stringify(msg) + '\n');

const stream = (name) => new Writable({
  write(chunk, _enc, done) {
    send({ type: name, id: current, text: chunk.toString() });
    done();
  },
});
const userConsole = new Console({ stdout: stream('stdout'), stderr: stream('stderr') });

function bundle(value) {
  const data = { 'text/plain': typeof value === 'string' ? util.inspect(value) : util.inspect(value, { depth: 4 }) };
  if (value && typeof value._repr_html_ === 'function') data['text/html'] = String(value._repr_html_());
  if (value && typeof value._repr_markdown_ === 'function') data['text/markdown'] = String(value._repr_markdown_());
  if (value && typeof value._repr_svg_ === 'function') data['image/svg+xml'] = String(value._repr_svg_());
  return data;
}

function display(...values) {
  for (const v of values) send({ type: 'result', id: current, is_main_result: false, data: bundle(v) });
}

const sandbox = {
  console: userConsole, display, require, process, Buffer, URL, URLSearchParams,
  setTimeout, clearTimeout, setInterval, clearInterval, setImmediate, clearImmediate,
  queueMicrotask, structuredClone, TextEncoder, TextDecoder, fetch: globalThis.fetch,
  AbortController, performance: globalThis.performance,
};
sandbox.globalThis = sandbox;
const context = vm.createContext(sandbox);

function userStack(err) {
  const frames = String(err.stack || '').split('\n').filter((l) => /^\s+at .*<cell>/.test(l));
  return [`${err.name || 'Error'}: ${err.message}`, ...frames].join('\n');
}

function reportError(err) {
  const isError = err && typeof err === 'object' && 'message' in err;
  send({
    type: 'error', id: current,
    name: isError ? (err.name || 'Error') : 'Error',
    value: isError ? String(err.message) : String(err),
    traceback: isError ? userStack(err) : String(err),
  });
}

/// Wraps code that uses await in an async function, returning its last expression.
function asyncWrap(code) {
  const lines = code.replace(/\s+$/, '').split('\n');
  const last = lines.pop() || '';
  const simple = /^[^;{}]+;?$/.test(last.trim()) && !/^\s*(let|const|var|if|for|while|return|throw|function|class|try|import)\b/.test(last);
  const tail = simple ? `return (${last.trim().replace(/;$/, '')});` : last;
  return `(async () => {\n${lines.join('\n')}\n${tail}\n})()`;
}

let count = 0;
async function execute(msg) {
  current = msg.id;
  count += 1;
  Object.assign(process.env, msg.env || {});
  try {
    const code = String(msg.code || '');
    const usesAwait = /\bawait\b/.test(code);
    const script = new vm.Script(usesAwait ? asyncWrap(code) : code, { filename: '<cell>', lineOffset: usesAwait ? -1 : 0 });
    let value = script.runInContext(context, { breakOnSigint: true });
    if (usesAwait) value = await value;
    if (value !== undefined) send({ type: 'result', id: current, is_main_result: true, data: bundle(value) });
  } catch (err) {
    reportError(err);
  }
  send({ type: 'done', id: current, execution_count: count, exit_code: null });
}

process.on('SIGINT', () => {});
process.on('unhandledRejection', (err) => reportError(err));
let buffer = '';
let queue = Promise.resolve();
sock.on('data', (chunk) => {
  buffer += chunk.toString();
  let nl;
  while ((nl = buffer.indexOf('\n')) >= 0) {
    const line = buffer.slice(0, nl);
    buffer = buffer.slice(nl + 1);
    let msg;
    try { msg = JSON.parse(line); } catch { continue; }
    if (msg.type === 'execute') queue = queue.then(() => execute(msg));
  }
});
sock.on('end', () => process.exit(0));
sock.on('error', () => process.exit(0));
send({ type: 'ready', language: 'javascript', pid: process.pid });
