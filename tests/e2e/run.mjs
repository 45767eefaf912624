// End-to-end test of the deployable pieces, on this machine only:
//
//   * statemachine/csv-merge.asl.json, the real definition, runs under
//     aws-local-stepfunctions (its library API);
//   * every Task state is bound to the REAL release binaries, started here as
//     Lambda runtime processes behind `cargo lambda watch --only-lambda-apis`
//     and invoked through the emulator's Lambda Invoke API (50 csv-merger
//     processes, so 50 batches really run at once);
//   * S3 is local-s3 on 127.0.0.1.
//
// The one substitution: the interpreter has no Distributed Map, so the
// Map's ItemReader becomes an ItemsPath over the items this runner reads
// from local-s3 with the ItemReader's own Parameters, when the Map starts
// (the execution runs as two segments split at the Map for that), and its
// ResultWriter is done by this runner too: the children's results are
// exported under the ResultWriter's own Parameters in Step Functions'
// layout (manifest.json, SUCCEEDED_0.json, FAILED_0.json).
//
// Lambda's part in a crash is played here as well: when a runtime process
// this runner started dies mid-invocation, the invocation fails with
// Runtime.ExitError, as Lambda answers, and a new process takes its place.
//
// Prints one line per check and a last line `N passed, M failed`; exits
// non-zero on any failed check. Every process started here is stopped by
// its PID at the end, failure or not. See tests/e2e/README.md.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { ExecutionError, StateMachine } from 'aws-local-stepfunctions';
import YAML from 'yaml';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ACCESS_KEY = 'local-s3-access-key';
const SECRET_KEY = 'local-s3-secret-key';
const REGION = 'us-east-1';
const ACCOUNT = '123456789012';
const STATE_MACHINE_NAME = 's3mm-csv-merge';

const { values: args } = parseArgs({
  options: {
    files: { type: 'string', default: process.env.S3MM_E2E_FILES ?? '20000' },
    'batch-size': { type: 'string', default: process.env.S3MM_E2E_BATCH_SIZE ?? '200' },
    mergers: { type: 'string', default: process.env.S3MM_E2E_MERGERS ?? '50' },
    'fault-rate': { type: 'string', default: process.env.S3MM_E2E_FAULT_RATE ?? '0.05' },
    'latency-ms': { type: 'string', default: process.env.S3MM_E2E_LATENCY_MS ?? '2' },
    profile: { type: 'string', default: process.env.S3MM_E2E_PROFILE ?? 'release' },
    keep: { type: 'boolean', default: false },
  },
});
const FILES = Number(args.files);
const BATCH_SIZE = Number(args['batch-size']);
const MERGERS = Number(args.mergers);
const FAULT_RATE = Number(args['fault-rate']);
const LATENCY_MS = Number(args['latency-ms']);

// ------------------------------------------------------------------ checks

const results = [];
function check(name, ok, detail = '') {
  results.push({ name, ok: Boolean(ok) });
  const line = `${ok ? 'ok' : 'not ok'} ${results.length} - ${name}`;
  console.log(detail ? `${line} # ${detail}` : line);
  return Boolean(ok);
}
const log = (...a) => console.log('#', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const elapsed = (t0) => `${((Date.now() - t0) / 1000).toFixed(1)} s`;

// --------------------------------------------------------------- processes

const children = new Set();
const started = new Set();
let tmpDir;

/** Starts a process in its own process group, output to a log file. */
function startProcess(label, command, argv, { env, cwd = ROOT, stdout = 'file' } = {}) {
  const logPath = path.join(tmpDir, 'logs', `${label}.log`);
  const out = fs.openSync(logPath, 'a');
  const child = spawn(command, argv, {
    cwd,
    env,
    detached: true,
    stdio: ['ignore', stdout === 'pipe' ? 'pipe' : out, out],
  });
  fs.closeSync(out);
  child.label = label;
  child.logPath = logPath;
  child.exited = false;
  child.on('exit', (code, signal) => {
    child.exited = true;
    child.exitInfo = signal ? `signal ${signal}` : `code ${code}`;
    children.delete(child);
  });
  children.add(child);
  started.add(child);
  return child;
}

/** SIGTERM to the process group the child leads, SIGKILL after `graceMs`. */
async function stopProcess(child, graceMs = 5000) {
  child.stopping = true;
  if (child.exited) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    return;
  }
  const timer = sleep(graceMs).then(() => 'timeout');
  if ((await Promise.race([gone, timer])) === 'timeout') {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    await gone;
  }
}

async function stopAll() {
  await Promise.all([...children].map((c) => stopProcess(c)));
}

// A Task still running when its execution was aborted (a failed batch
// stops the local Map) may reject later: that is not a test failure.
process.on('unhandledRejection', (err) => log(`late rejection: ${err?.name ?? ''} ${String(err?.message ?? err).slice(0, 200)}`));

process.on('exit', () => {
  for (const child of children) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    console.log(`# ${signal}: stopping everything`);
    stopAll().finally(() => process.exit(130));
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitForPort(port, child, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exited) throw new Error(`${child.label} exited (${child.exitInfo}); see ${child.logPath}`);
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(200);
  }
  throw new Error(`${child.label} did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

function tail(file, lines = 15) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

// ----------------------------------------------------------------- local-s3

const binary = (name) => path.join(ROOT, 'target', args.profile, name);

/** Starts local-s3 on `root`; resolves with its endpoint and a way to stop it and read its counters. */
async function startLocalS3(label, root, extra = []) {
  const child = startProcess(label, binary('local-s3'), ['--root', root, '--port', '0', ...extra], {
    env: { PATH: process.env.PATH, RUST_LOG: 'warn,s3s=off' },
    stdout: 'pipe',
  });
  const lines = readline.createInterface({ input: child.stdout });
  const collected = [];
  const endpoint = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label}: no endpoint line; see ${child.logPath}`)), 30000);
    lines.on('line', (line) => {
      if (line.startsWith('endpoint=')) {
        clearTimeout(timer);
        resolve(line.slice('endpoint='.length).trim());
      } else {
        collected.push(line);
      }
    });
    child.once('exit', () => reject(new Error(`${label} exited (${child.exitInfo}); see ${child.logPath}`)));
  });
  return {
    child,
    endpoint,
    /** Stops it; resolves with its shutdown summary (request and fault counters). */
    async stop() {
      await stopProcess(child, 10000);
      const summary = collected.find((l) => l.startsWith('{'));
      try {
        return summary ? JSON.parse(summary) : null;
      } catch {
        return null;
      }
    },
  };
}

function s3Client(endpoint) {
  return new S3Client({
    endpoint,
    region: REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY },
    maxAttempts: 10,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { httpAgent: new http.Agent({ keepAlive: true, maxSockets: 64 }), requestTimeout: 60000 },
  });
}

/**
 * A pass-through proxy in front of local-s3 (Host and every signed header
 * pass unchanged, so SigV4 still verifies). `refuse(method, url)` picks
 * requests to answer with S3's 503 SlowDown instead of forwarding them.
 */
function startS3Proxy(targetEndpoint, refuse) {
  const target = new URL(targetEndpoint);
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const sockets = new Set();
  let refused = 0;
  const server = http.createServer((req, res) => {
    if (refuse(req.method, req.url)) {
      refused++;
      req.resume();
      const body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>';
      res.writeHead(503, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers, agent },
      (up) => {
        res.writeHead(up.statusCode, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => req.socket.destroy());
    req.pipe(upstream);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        endpoint: `http://127.0.0.1:${server.address().port}`,
        refused: () => refused,
        close: () =>
          new Promise((done) => {
            for (const socket of sockets) socket.destroy();
            agent.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

async function getText(s3, Bucket, Key) {
  const out = await s3.send(new GetObjectCommand({ Bucket, Key }));
  return Buffer.from(await out.Body.transformToByteArray());
}

async function exists(s3, Bucket, Key) {
  try {
    await s3.send(new HeadObjectCommand({ Bucket, Key }));
    return true;
  } catch (err) {
    if (err?.$metadata?.httpStatusCode === 404) return false;
    throw err;
  }
}

/** Runs `fn` over `items`, `limit` at a time. */
async function pool(items, limit, fn) {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  });
  await Promise.all(workers);
}

// ------------------------------------------------- Lambda runtime emulator

/**
 * `cargo lambda watch --only-lambda-apis` serves the Lambda Invoke API
 * (POST /2015-03-31/functions/NAME/invocations) and the Runtime API under
 * /.rt/NAME/2018-06-01/runtime/...: a runtime process whose
 * AWS_LAMBDA_RUNTIME_API is http://HOST:PORT/.rt/NAME receives the
 * invocations of NAME. NAME must be a binary of the workspace.
 */
class Emulator {
  constructor(port) {
    this.port = port;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
    this.stats = {};
    this.fleet = [];
  }

  static async start() {
    const port = await freePort();
    const child = startProcess(
      'cargo-lambda-watch',
      'cargo',
      ['lambda', 'watch', '--only-lambda-apis', '--ignore-changes', '-A', '127.0.0.1', '-P', String(port)],
      { env: { ...process.env, CARGO_TERM_COLOR: 'never' } },
    );
    await waitForPort(port, child, 120000);
    const emulator = new Emulator(port);
    emulator.child = child;
    return emulator;
  }

  runtimeEnv(fn, instance, extra) {
    return {
      PATH: process.env.PATH,
      HOME: process.env.HOME ?? tmpDir,
      AWS_LAMBDA_RUNTIME_API: `http://127.0.0.1:${this.port}/.rt/${fn}`,
      AWS_LAMBDA_FUNCTION_NAME: fn,
      AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '256',
      AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${fn}`,
      AWS_LAMBDA_LOG_STREAM_NAME: `e2e/${instance}`,
      AWS_ACCESS_KEY_ID: ACCESS_KEY,
      AWS_SECRET_ACCESS_KEY: SECRET_KEY,
      AWS_REGION: REGION,
      // Nothing may leave this machine: no instance metadata, no profiles.
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_CONFIG_FILE: path.join(tmpDir, 'aws-config-empty'),
      AWS_SHARED_CREDENTIALS_FILE: path.join(tmpDir, 'aws-credentials-empty'),
      LOG_FORMAT: 'json',
      RUST_LOG: 'warn',
      ...extra,
    };
  }

  /**
   * Starts `count` runtime processes of binary `fn`; `extraEnv` is an object
   * or a function of the process's index. Returns the processes.
   */
  startFunction(fn, count, extraEnv = {}, labelSuffix = '') {
    const processes = [];
    for (let i = 0; i < count; i++) processes.push(this.startOne(fn, i, extraEnv, labelSuffix));
    return processes;
  }

  startOne(fn, i, extraEnv = {}, labelSuffix = '') {
    const label = `${fn}${labelSuffix}-${i}`;
    const env = typeof extraEnv === 'function' ? extraEnv(i) : extraEnv;
    const child = startProcess(label, binary(fn), [], { env: this.runtimeEnv(fn, label, env) });
    this.fleet.push(child);
    return child;
  }

  async stopFleet() {
    await Promise.all(this.fleet.map((c) => stopProcess(c)));
    this.fleet = [];
  }

  /** Processes of the fleet that died; each is a failed init or a crash. */
  deadFunctions() {
    return this.fleet.filter((c) => c.exited);
  }

  stat(fn) {
    return (this.stats[fn] ??= { invocations: 0, inFlight: 0, maxInFlight: 0, errors: {} });
  }

  resetStats() {
    this.stats = {};
  }

  /** The Lambda Invoke API; resolves with the payload or throws the function's error. */
  async invoke(fn, payload, signal) {
    const s = this.stat(fn);
    s.invocations++;
    s.inFlight++;
    s.maxInFlight = Math.max(s.maxInFlight, s.inFlight);
    try {
      let answer;
      try {
        answer = await this.post(`/2015-03-31/functions/${encodeURIComponent(fn)}/invocations`, payload, signal);
      } catch (err) {
        // Aborted by Machine.crash: the error Lambda gives when the process died.
        if (signal?.aborted && err === signal.reason) s.errors[err.name] = (s.errors[err.name] ?? 0) + 1;
        throw err;
      }
      const { status, body } = answer;
      let parsed;
      try {
        parsed = body.length ? JSON.parse(body) : null;
      } catch {
        parsed = undefined;
      }
      // A function error: cargo-lambda answers 500 with the runtime's
      // {errorType, errorMessage}; an init error comes back as 200 with it.
      const isError =
        status === 500 ||
        (status === 200 && parsed && typeof parsed === 'object' && 'errorType' in parsed && 'errorMessage' in parsed &&
          Object.keys(parsed).length <= 3);
      if (isError && parsed && typeof parsed === 'object' && parsed.errorType) {
        s.errors[parsed.errorType] = (s.errors[parsed.errorType] ?? 0) + 1;
        throw functionError(parsed);
      }
      if (status !== 200 || parsed === undefined) {
        s.errors['Runner.EmulatorError'] = (s.errors['Runner.EmulatorError'] ?? 0) + 1;
        const err = new Error(`cargo lambda watch answered ${status} for ${fn}: ${body.slice(0, 500)}`);
        err.name = 'Runner.EmulatorError';
        throw err;
      }
      return parsed;
    } finally {
      s.inFlight--;
    }
  }

  post(pathName, payload, signal) {
    const data = Buffer.from(JSON.stringify(payload));
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: this.port,
          path: pathName,
          method: 'POST',
          agent: this.agent,
          headers: { 'content-type': 'application/json', 'content-length': data.length },
        },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      signal?.addEventListener(
        'abort',
        () => {
          reject(signal.reason);
          req.destroy();
        },
        { once: true },
      );
      req.end(data);
    });
  }
}

/** A Lambda function error as Step Functions reports it: Error = errorType, Cause = the error payload. */
function functionError(payload) {
  const err = new Error(JSON.stringify(payload));
  err.name = payload.errorType;
  return err;
}

// -------------------------------------------------------- the state machine

/** The template's DefinitionSubstitutions, each mapped to the binary of the function it names. */
function readSubstitutions() {
  const template = YAML.parse(fs.readFileSync(path.join(ROOT, 'template.yaml'), 'utf8'), { logLevel: 'silent' });
  const machines = Object.values(template.Resources).filter((r) => r.Type === 'AWS::Serverless::StateMachine');
  if (machines.length !== 1) throw new Error('template.yaml: expected one AWS::Serverless::StateMachine');
  const subs = {};
  for (const [name, value] of Object.entries(machines[0].Properties.DefinitionSubstitutions ?? {})) {
    // `!GetAtt XFunction.Arn` parses (tag ignored) as the scalar "XFunction.Arn".
    const logical = String(value).split('.')[0];
    const resource = template.Resources[logical];
    const bin = resource?.Metadata?.BuildProperties?.Binary;
    if (!bin) throw new Error(`template.yaml: substitution ${name} -> ${value} names no function with a Binary`);
    subs[name] = { binary: bin, arn: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${bin}` };
  }
  return subs;
}

function substitute(text, subs) {
  const out = text.replace(/\$\{([A-Za-z0-9_]+)\}/g, (m, name) => {
    if (!subs[name]) throw new Error(`definition placeholder ${m} has no DefinitionSubstitutions entry in template.yaml`);
    return subs[name].arn;
  });
  return JSON.parse(out);
}

function transitions(state) {
  const out = [];
  if (state.Next) out.push(['Next', state.Next]);
  if (state.Default) out.push(['Default', state.Default]);
  for (const c of state.Choices ?? []) out.push(['Choice', c.Next]);
  for (const c of state.Catch ?? []) out.push(['Catch', c.Next]);
  return out;
}

function reachable(states, start, stopAt) {
  const seen = new Set();
  const queue = [start];
  while (queue.length) {
    const name = queue.shift();
    if (seen.has(name) || name === stopAt) continue;
    seen.add(name);
    for (const [, next] of transitions(states[name])) queue.push(next);
  }
  return seen;
}

/**
 * Splits the definition at its Distributed Map (the state with an
 * ItemReader): `head` runs up to it (the transition into it becomes End),
 * `tail` starts at it, with ItemReader replaced by an ItemsPath over the
 * items the runner puts in the context object. Nothing else changes.
 */
function splitAtItemReader(definition) {
  const maps = Object.keys(definition.States).filter((n) => definition.States[n].ItemReader);
  if (maps.length !== 1) throw new Error(`expected exactly one top-level state with an ItemReader, found ${maps.length}`);
  const mapName = maps[0];
  const map = definition.States[mapName];
  if (map.Type !== 'Map') throw new Error(`${mapName} has an ItemReader but is not a Map`);
  if (map.ItemReader.Resource !== 'arn:aws:states:::s3:getObject' || map.ItemReader.ReaderConfig?.InputType !== 'JSON') {
    throw new Error(`${mapName}: the runner reads only JSON arrays with s3:getObject`);
  }
  const rewritten = structuredClone(definition);
  const rewrittenMap = rewritten.States[mapName];
  delete rewrittenMap.ItemReader;
  rewrittenMap.ItemsPath = '$$.ItemReader.Items';
  delete rewrittenMap.ResultWriter;
  if (map.ResultWriter && map.ResultWriter.Resource !== 'arn:aws:states:::s3:putObject') {
    throw new Error(`${mapName}: the runner exports results only with s3:putObject`);
  }

  const headNames = reachable(definition.States, definition.StartAt, mapName);
  const head = { StartAt: definition.StartAt, States: {} };
  for (const name of headNames) {
    const state = structuredClone(definition.States[name]);
    for (const [kind, next] of transitions(state)) {
      if (next !== mapName) continue;
      if (kind !== 'Next') throw new Error(`${name} enters ${mapName} by ${kind}; the runner splits only at a Next`);
      delete state.Next;
      state.End = true;
    }
    head.States[name] = state;
  }
  const tail = { StartAt: mapName, States: {} };
  for (const name of reachable(rewritten.States, mapName, null)) tail.States[name] = rewritten.States[name];
  return { mapName, itemReader: map.ItemReader, resultWriter: map.ResultWriter ?? null, head, tail, rewritten };
}

function collectTasks(states, out = []) {
  for (const [name, state] of Object.entries(states)) {
    if (state.Type === 'Task') out.push([name, state]);
    const inner = state.ItemProcessor ?? state.Iterator;
    if (inner) collectTasks(inner.States, out);
    for (const branch of state.Branches ?? []) collectTasks(branch.States, out);
  }
  return out;
}

class Machine {
  constructor(emulator, s3) {
    this.emulator = emulator;
    this.s3 = s3;
    const subs = readSubstitutions();
    this.functionByArn = Object.fromEntries(Object.values(subs).map((s) => [s.arn, s.binary]));
    const text = fs.readFileSync(path.join(ROOT, 'statemachine', 'csv-merge.asl.json'), 'utf8');
    this.definition = substitute(text, subs);
    this.split = splitAtItemReader(this.definition);
    this.tasks = collectTasks(this.definition.States);
    // Called before each invocation with (stateName, functionName, payload,
    // attempt); may throw to simulate a Lambda service error.
    this.beforeInvoke = null;
    this.attempts = new Map();
    // Invocations in flight by attempt key, so crash() can fail one.
    this.inflight = new Map();
  }

  /** Fails the invocation in flight under `key` with `error`, as Lambda does when its process dies. */
  crash(key, error) {
    const controller = this.inflight.get(key);
    if (!controller) throw new Error(`no invocation in flight for ${key}`);
    controller.abort(error);
  }

  handlers() {
    const handlers = {};
    for (const [name, state] of this.tasks) {
      if (state.Resource !== 'arn:aws:states:::lambda:invoke') {
        throw new Error(`Task ${name}: the runner binds only arn:aws:states:::lambda:invoke, not ${state.Resource}`);
      }
      handlers[name] = async (input) => {
        const fn = this.functionByArn[input.FunctionName];
        if (!fn) throw new Error(`Task ${name}: FunctionName ${input.FunctionName} is not one of the template's functions`);
        const key = `${name}:${JSON.stringify(input.Payload?.batch?.batch_id ?? '')}:${input.Payload?.run_id ?? ''}`;
        const attempt = (this.attempts.get(key) ?? 0) + 1;
        this.attempts.set(key, attempt);
        if (this.beforeInvoke) await this.beforeInvoke(name, fn, input.Payload, attempt);
        const controller = new AbortController();
        this.inflight.set(key, controller);
        let payload;
        try {
          payload = await this.emulator.invoke(fn, input.Payload, controller.signal);
        } finally {
          this.inflight.delete(key);
        }
        return {
          ExecutedVersion: '$LATEST',
          Payload: payload,
          SdkHttpMetadata: { HttpStatusCode: 200 },
          SdkResponseMetadata: { RequestId: crypto.randomUUID() },
          StatusCode: 200,
        };
      };
    }
    return handlers;
  }

  /** Evaluates an ItemReader's or ResultWriter's Parameters with the interpreter itself (a one-state Pass machine). */
  async evaluateParameters(parameters, mapInput, context) {
    const probe = new StateMachine({ StartAt: 'P', States: { P: { Type: 'Pass', Parameters: parameters, End: true } } });
    return probe.run(mapInput, { context }).result;
  }

  /**
   * What Step Functions' ResultWriter writes when the Map ends: under
   * {Prefix}/{map run id}/, the children by status in SUCCEEDED_0.json and
   * FAILED_0.json, and manifest.json naming them. Resolves with the
   * ResultWriterDetails the Map would output.
   */
  async exportResults(mapInput, context, items, iterations) {
    const { Bucket, Prefix } = await this.evaluateParameters(this.split.resultWriter.Parameters, mapInput, context);
    const mapRunId = crypto.randomUUID();
    const base = `${Prefix}/${mapRunId}/`;
    const children = { SUCCEEDED: [], FAILED: [] };
    items.forEach((item, index) => {
      const it = iterations.get(index);
      const name = `${mapRunId}:${index}`;
      const child = {
        ExecutionArn: `arn:aws:states:${REGION}:${ACCOUNT}:express:${STATE_MACHINE_NAME}/${this.split.mapName}:${name}`,
        Name: name,
        Input: JSON.stringify(item),
        InputDetails: { Included: true },
        Status: it?.status ?? 'FAILED',
      };
      if (it?.status === 'SUCCEEDED') Object.assign(child, { Output: JSON.stringify(it.output), OutputDetails: { Included: true } });
      else Object.assign(child, { Error: it?.error ?? 'States.Runtime', Cause: String(it?.cause ?? 'the runner saw no end of this child') });
      children[child.Status === 'SUCCEEDED' ? 'SUCCEEDED' : 'FAILED'].push(child);
    });
    const resultFiles = { FAILED: [], PENDING: [], SUCCEEDED: [] };
    for (const [status, list] of Object.entries(children)) {
      if (!list.length) continue;
      const Key = `${base}${status}_0.json`;
      const body = JSON.stringify(list);
      await this.s3.send(new PutObjectCommand({ Bucket, Key, Body: body, ContentType: 'application/json' }));
      resultFiles[status].push({ Key, Size: Buffer.byteLength(body) });
    }
    const manifest = {
      DestinationBucket: Bucket,
      MapRunArn: `arn:aws:states:${REGION}:${ACCOUNT}:mapRun:${STATE_MACHINE_NAME}/${this.split.mapName}:${mapRunId}`,
      ResultFiles: resultFiles,
    };
    const Key = `${base}manifest.json`;
    await this.s3.send(new PutObjectCommand({ Bucket, Key, Body: JSON.stringify(manifest), ContentType: 'application/json' }));
    return { Bucket, Key };
  }

  /**
   * Runs one execution; resolves with {status, output | error, cause, retried, items}.
   * `name` is the execution name ($$.Execution.Name).
   */
  async execute(name, input, { timeoutMs = 15 * 60 * 1000 } = {}) {
    const context = {
      Execution: {
        Id: `arn:aws:states:${REGION}:${ACCOUNT}:execution:${STATE_MACHINE_NAME}:${name}`,
        Name: name,
        RoleArn: `arn:aws:iam::${ACCOUNT}:role/${STATE_MACHINE_NAME}-role`,
        StartTime: new Date().toISOString(),
      },
      StateMachine: { Id: `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:${STATE_MACHINE_NAME}`, Name: STATE_MACHINE_NAME },
    };
    const overrides = { taskResourceLocalHandlers: this.handlers() };
    const retried = {};
    const iterations = new Map();
    const run = async (definition, segmentInput, segmentContext) => {
      const machine = new StateMachine(definition);
      const execution = machine.run(segmentInput, { overrides, context: segmentContext });
      const events = (async () => {
        for await (const event of execution.eventLogs) {
          if (event.type === 'StateRetried') retried[event.state.name] = (retried[event.state.name] ?? 0) + 1;
          if (event.type === 'MapIterationSucceeded') iterations.set(event.index, { status: 'SUCCEEDED', output: event.output });
          if (event.type === 'MapIterationFailed') iterations.set(event.index, { status: 'FAILED', error: event.Error, cause: event.Cause });
        }
      })();
      let timer;
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => {
          execution.abort();
          reject(new Error(`execution ${name} did not finish within ${timeoutMs} ms`));
        }, timeoutMs);
      });
      try {
        return await Promise.race([execution.result, timeout]);
      } finally {
        clearTimeout(timer);
        await Promise.race([events, sleep(1000)]);
      }
    };
    try {
      const mapInput = await run(this.split.head, input, context);
      const { Bucket, Key } = await this.evaluateParameters(this.split.itemReader.Parameters, mapInput, context);
      const items = JSON.parse((await getText(this.s3, Bucket, Key)).toString('utf8'));
      if (!Array.isArray(items)) throw new Error(`s3://${Bucket}/${Key} is not a JSON array`);
      let output;
      let failure;
      try {
        output = await run(this.split.tail, mapInput, { ...context, ItemReader: { Items: items } });
      } catch (err) {
        failure = err;
      }
      // The export happens when the Map ends, whatever follows it.
      const resultWriterDetails =
        this.split.resultWriter && iterations.size > 0 ? await this.exportResults(mapInput, context, items, iterations) : null;
      if (failure) throw failure;
      return { status: 'SUCCEEDED', output, retried, items, mapInput, resultWriterDetails };
    } catch (err) {
      if (err instanceof ExecutionError) {
        return { status: 'FAILED', error: err.cause?.name, cause: err.cause?.message, retried };
      }
      throw err;
    }
  }
}

// ------------------------------------------------------------------- data

const utf8Compare = (a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
const HEADER = 'id,name,amount\n';

/** Source keys, a few with spaces, unicode and URL-special characters. */
function seedKey(prefix, i) {
  const n = String(i).padStart(5, '0');
  switch (i % 1000) {
    case 1:
      return `${prefix}relatório de vendas ${n}.csv`;
    case 2:
      return `${prefix}a+b=c&d %25 ${n}.csv`;
    case 3:
      return `${prefix}日本/データ ${n}.csv`;
    default:
      return `${prefix}part-${n}.csv`;
  }
}
const seedRow = (i) => `${i},name ${i},${i * 7}\n`;

async function seed(s3, bucket, prefix, count, start = 0) {
  const entries = Array.from({ length: count }, (_, j) => {
    const i = start + j;
    return { key: seedKey(prefix, i), row: seedRow(i) };
  });
  await pool(entries, 64, ({ key, row }) =>
    s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: HEADER + row, ContentType: 'text/csv' })),
  );
  return entries;
}

/** What each merged-NNNNN.csv must hold: the sources in S3 (UTF-8 byte) order, chunked by batch size. */
function expectedOutputs(entries, batchSize) {
  const sorted = [...entries].sort((a, b) => utf8Compare(a.key, b.key));
  const outputs = [];
  for (let i = 0; i < sorted.length; i += batchSize) {
    outputs.push(HEADER + sorted.slice(i, i + batchSize).map((e) => e.row).join(''));
  }
  return outputs;
}

/** Most intervals [start, end] open at one instant. */
function maxOverlap(intervals) {
  const points = [];
  for (const [s, e] of intervals) points.push([s, 1], [e, -1]);
  points.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0;
  let max = 0;
  for (const [, d] of points) max = Math.max(max, (open += d));
  return max;
}

// ------------------------------------------------------------------ phases

const SRC = 'e2e-source';
const DST = 'e2e-dest';
const MOVER_SRC = 's3mm-demo-source';
const MOVER_DST = 's3mm-demo-archive';
const SAMPLE_BODY = 'date,city,amount\n2026-11-24,São Paulo,42\n';
const SAMPLE_KEY = 'incoming/daily report São Paulo.csv';
const md5 = (text) => crypto.createHash('md5').update(text).digest('hex');
/** How S3 writes a key into its event notifications: form-URL-encoded. */
const s3EventKey = (key) => encodeURIComponent(key).replace(/%20/g, '+').replace(/%2F/g, '/');

function s3PutEvent(bucket, key, body) {
  return {
    Records: [
      {
        eventVersion: '2.1',
        eventSource: 'aws:s3',
        awsRegion: REGION,
        eventTime: new Date().toISOString(),
        eventName: 'ObjectCreated:Put',
        s3: {
          s3SchemaVersion: '1.0',
          configurationId: 's3mm-mover',
          bucket: { name: bucket, arn: `arn:aws:s3:::${bucket}` },
          object: { key: s3EventKey(key), size: Buffer.byteLength(body), eTag: md5(body) },
        },
      },
    ],
  };
}

async function moverPhase(emulator, s3) {
  log('mover: sample events and a burst of S3 notifications through the emulator');
  for (const bucket of [MOVER_SRC, MOVER_DST]) await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const landed = `archive/daily report São Paulo.csv`;
  const batchFiles = ['mover-batch-operations-1.0.json', 'mover-batch-operations-2.0.json'];
  const sqsFiles = ['mover-sqs.json', 'mover-sqs-eventbridge.json'];
  for (const file of ['mover-s3-put.json', ...sqsFiles, 'mover-eventbridge.json', ...batchFiles]) {
    await s3.send(new PutObjectCommand({ Bucket: MOVER_SRC, Key: SAMPLE_KEY, Body: SAMPLE_BODY }));
    const event = JSON.parse(fs.readFileSync(path.join(ROOT, 'events', file), 'utf8'));
    let answer;
    let error;
    try {
      answer = await emulator.invoke('mover', event);
    } catch (err) {
      error = err;
    }
    const body = error ? null : (await getText(s3, MOVER_DST, landed).catch(() => null))?.toString('utf8');
    const sourceGone = !(await exists(s3, MOVER_SRC, SAMPLE_KEY));
    const sqsOk = !sqsFiles.includes(file) || (Array.isArray(answer?.batchItemFailures) && answer.batchItemFailures.length === 0);
    // S3 Batch Operations reads each task's resultCode.
    const batchOk =
      !batchFiles.includes(file) ||
      (answer?.invocationId === event.invocationId && answer?.results?.length === 1 &&
        answer.results[0].taskId === event.tasks[0].taskId && answer.results[0].resultCode === 'Succeeded');
    check(
      `mover: events/${file} moves the sample object byte for byte`,
      !error && body === SAMPLE_BODY && sourceGone && sqsOk && batchOk,
      error ? `${error.name}: ${error.message}` : `source gone: ${sourceGone}, answer ${JSON.stringify(answer)}`,
    );
    await s3.send(new DeleteObjectCommand({ Bucket: MOVER_DST, Key: landed }));
  }

  // A burst: 200 objects with awkward keys, 16 events in flight, plus a
  // replay of every 10th event (at-least-once delivery) and one event for a
  // key outside the source prefix.
  const burst = Array.from({ length: 200 }, (_, i) => ({
    key: `incoming/burst/${i % 3 === 0 ? 'ç ü ' : ''}file ${i} +&=%${i % 7 === 0 ? ' 日本' : ''}.csv`,
    body: `n,square\n${i},${i * i}\n`,
  }));
  await pool(burst, 32, ({ key, body }) => s3.send(new PutObjectCommand({ Bucket: MOVER_SRC, Key: key, Body: body })));
  const outside = { key: 'elsewhere/keep me.csv', body: 'x\n1\n' };
  await s3.send(new PutObjectCommand({ Bucket: MOVER_SRC, Key: outside.key, Body: outside.body }));
  const t0 = Date.now();
  const failures = [];
  const events = [...burst, ...burst.filter((_, i) => i % 10 === 0), outside];
  await pool(events, 16, async ({ key, body }) => {
    try {
      await emulator.invoke('mover', s3PutEvent(MOVER_SRC, key, body));
    } catch (err) {
      failures.push(`${key}: ${err.name} ${err.message.slice(0, 200)}`);
    }
  });
  let wrong = 0;
  await pool(burst, 32, async ({ key, body }) => {
    const dest = `archive/${key.slice('incoming/'.length)}`;
    const got = (await getText(s3, MOVER_DST, dest).catch(() => null))?.toString('utf8');
    if (got !== body || (await exists(s3, MOVER_SRC, key))) wrong++;
  });
  check(
    `mover: 200 S3 notifications (+20 replays) move every object to archive/ byte for byte`,
    failures.length === 0 && wrong === 0,
    `${elapsed(t0)}, ${failures.length} failed invocations, ${wrong} objects wrong${failures.length ? `; first: ${failures[0]}` : ''}`,
  );
  check(
    'mover: a key outside SOURCE_PREFIX is left where it is',
    (await exists(s3, MOVER_SRC, outside.key)) && !(await exists(s3, MOVER_DST, `archive/${outside.key}`)),
  );
}

async function errorPathsPhase(machine, s3) {
  log('merge: error paths (empty prefix, invalid input, a failed batch, delete_sources)');
  const base = { source_bucket: SRC, dest_bucket: DST, dest_prefix: 'merged-small/' };

  machine.emulator.resetStats();
  const empty = await machine.execute('e2e-empty', { ...base, source_prefix: 'nothing-here/' });
  check(
    'merge: an empty prefix fails the execution with EmptyPrefix, not retried',
    empty.status === 'FAILED' && empty.error === 'EmptyPrefix' && machine.emulator.stat('batch-generator').invocations === 1,
    `${empty.status} ${empty.error}: ${String(empty.cause).slice(0, 160)}`,
  );

  machine.emulator.resetStats();
  const invalid = await machine.execute('e2e-invalid', { source_bucket: SRC, source_prefix: 'small-ok/', dest_prefix: 'x/' });
  check(
    'merge: an input without dest_bucket fails with InvalidInput, not retried',
    invalid.status === 'FAILED' && invalid.error === 'InvalidInput' && machine.emulator.stat('batch-generator').invocations === 1,
    `${invalid.status} ${invalid.error}: ${String(invalid.cause).slice(0, 160)}`,
  );

  // A batch whose manifest is not JSON fails with MergeFailed (never
  // retried); the aggregator still runs, its report names the batch, the
  // sources stay (delete_sources is ignored when a batch failed), and the
  // execution fails with BatchesFailed.
  const failEntries = await seed(s3, SRC, 'small-fail/', 30, 100000);
  machine.emulator.resetStats();
  machine.beforeInvoke = async (state, fn, payload) => {
    if (fn === 'csv-merger' && payload.run_id === 'e2e-failed-batch' && payload.batch.batch_id === 1) {
      await s3.send(new PutObjectCommand({ Bucket: payload.dest_bucket, Key: payload.batch.manifest_key, Body: 'not a manifest' }));
    }
  };
  const failed = await machine.execute('e2e-failed-batch', {
    ...base,
    source_prefix: 'small-fail/',
    batch_size: 10,
    delete_sources: true,
  });
  machine.beforeInvoke = null;
  let report = null;
  try {
    report = JSON.parse((await getText(s3, DST, 'merged-small/e2e-failed-batch/report.json')).toString('utf8'));
  } catch {
    /* checked below */
  }
  const failedIds = (report?.failed_batches ?? []).map((b) => b.batch_id);
  check(
    'merge: a batch failing with MergeFailed still runs the aggregator; the execution fails with BatchesFailed',
    failed.status === 'FAILED' && failed.error === 'BatchesFailed' && /report\.json/.test(String(failed.cause)),
    `${failed.status} ${failed.error}: ${String(failed.cause).slice(0, 200)}`,
  );
  check(
    'merge: report.json of the failed run names the failed batch',
    report !== null && failedIds.includes(1),
    `failed_batches ${JSON.stringify(failedIds)}`,
  );
  check(
    'merge: MergeFailed is not retried',
    machine.attempts.get('MergeBatch:1:e2e-failed-batch') === 1,
    `attempts ${machine.attempts.get('MergeBatch:1:e2e-failed-batch')}`,
  );
  let kept = 0;
  for (const e of failEntries) if (await exists(s3, SRC, e.key)) kept++;
  check('merge: sources are kept when a batch failed, even with delete_sources', kept === failEntries.length, `${kept}/${failEntries.length} kept`);

  // delete_sources on a run that succeeds.
  const delEntries = await seed(s3, SRC, 'small-del/', 30, 200000);
  const del = await machine.execute('e2e-delete-sources', { ...base, source_prefix: 'small-del/', batch_size: 10, delete_sources: true });
  const expected = expectedOutputs(delEntries, 10);
  let same = 0;
  for (let k = 0; k < expected.length; k++) {
    const got = await getText(s3, DST, `merged-small/e2e-delete-sources/merged-${String(k).padStart(5, '0')}.csv`).catch(() => null);
    if (got?.toString('utf8') === expected[k]) same++;
  }
  let left = 0;
  for (const e of delEntries) if (await exists(s3, SRC, e.key)) left++;
  check(
    'merge: delete_sources deletes the merged sources after a complete run',
    del.status === 'SUCCEEDED' && same === expected.length && left === 0,
    `${del.status}${del.error ? ` ${del.error}: ${del.cause}` : ''}, ${same}/${expected.length} outputs right, ${left} sources left`,
  );

  // Incremental runs through the real definition: the first merges what is
  // there; the next finds nothing new and still succeeds, with no batches
  // for the Map and a report. The window ends at a whole second, so the
  // first run waits for the clock to pass the second of the last upload.
  const incEntries = await seed(s3, SRC, 'small-inc/', 20, 300000);
  const second = Math.floor(Date.now() / 1000);
  while (Math.floor(Date.now() / 1000) === second) await new Promise((resolve) => setTimeout(resolve, 5));
  const incInput = { ...base, source_prefix: 'small-inc/', batch_size: 10, incremental: true, settle_seconds: 0 };
  const inc1 = await machine.execute('e2e-incremental-1', incInput);
  const inc2 = await machine.execute('e2e-incremental-2', incInput);
  const incExpected = expectedOutputs(incEntries, 10);
  let incSame = 0;
  for (let k = 0; k < incExpected.length; k++) {
    const got = await getText(s3, DST, `merged-small/e2e-incremental-1/merged-${String(k).padStart(5, '0')}.csv`).catch(() => null);
    if (got?.toString('utf8') === incExpected[k]) incSame++;
  }
  const stateKey = `merged-small/_incremental/${SRC}/small-inc/state.json`;
  const state = JSON.parse((await getText(s3, DST, stateKey).catch(() => Buffer.from('{}'))).toString('utf8'));
  check(
    'merge: incremental runs: the first merges every file, the next finds nothing new and succeeds with no outputs',
    inc1.status === 'SUCCEEDED' && inc1.output?.total_files === 20 && incSame === incExpected.length &&
      inc2.status === 'SUCCEEDED' && inc2.output?.total_files === 0 && inc2.output?.outputs === 0 &&
      state.last_run === 'e2e-incremental-2' && state.running === null,
    `${inc1.status} ${JSON.stringify(inc1.output ?? inc1.cause)}, ${incSame}/${incExpected.length} outputs right; ` +
      `${inc2.status} ${JSON.stringify(inc2.output ?? inc2.cause)}; state ${JSON.stringify(state)}`,
  );
}

async function verifyRun(s3, runName, entries, exec, label) {
  const runPrefix = `merged-csvs/${runName}/`;
  const expected = expectedOutputs(entries, BATCH_SIZE);
  const ok = check(
    `${label}: the execution succeeds`,
    exec.status === 'SUCCEEDED',
    exec.status === 'SUCCEEDED' ? '' : `${exec.error}: ${String(exec.cause).slice(0, 300)}`,
  );
  if (!ok) return null;
  const out = exec.output;
  check(
    `${label}: the execution output is the report summary`,
    out && out.run_id === runName && out.total_files === FILES && out.merged_files === FILES && out.rows === FILES &&
      out.skipped_files === 0 && out.failed_batches === 0 && out.outputs === expected.length &&
      out.report_key === `${runPrefix}report.json`,
    JSON.stringify(out),
  );
  const gen = exec.mapInput;
  check(
    `${label}: batch-generator output has the contract's fields and ${expected.length} batches`,
    gen && gen.run_id === runName && gen.run_prefix === runPrefix && gen.total_files === FILES &&
      gen.total_batches === expected.length && gen.batches_key === `${runPrefix}_manifests/batches.json` &&
      gen.map_results_prefix === `${runPrefix}_map` &&
      gen.single_output === true && gen.delete_sources === false,
    JSON.stringify(gen),
  );
  const itemsOk =
    exec.items.length === expected.length &&
    exec.items.every(
      (it, k) =>
        it.batch_id === k && it.manifest_key === `${runPrefix}_manifests/batch-${String(k).padStart(5, '0')}.json` &&
        it.output_key === `${runPrefix}merged-${String(k).padStart(5, '0')}.csv` &&
        it.file_count === Math.min(BATCH_SIZE, FILES - k * BATCH_SIZE),
    );
  check(`${label}: batches.json holds {batch_id, manifest_key, output_key, file_count} per batch`, itemsOk, JSON.stringify(exec.items[0]));

  // The Map's ResultWriter: one SUCCEEDED child per batch, under the run's prefix.
  let exported = null;
  try {
    const details = exec.resultWriterDetails;
    const manifest = JSON.parse((await getText(s3, details.Bucket, details.Key)).toString('utf8'));
    const succeeded = [];
    for (const file of manifest.ResultFiles.SUCCEEDED) succeeded.push(...JSON.parse((await getText(s3, details.Bucket, file.Key)).toString('utf8')));
    exported = { details, manifest, ids: succeeded.map((c) => JSON.parse(c.Output).batch_id).sort((a, b) => a - b) };
  } catch (err) {
    exported = { error: err.message };
  }
  check(
    `${label}: the Map's results are exported under ${runPrefix}_map/ (ResultWriter), one SUCCEEDED child per batch`,
    exported.details?.Bucket === DST && new RegExp(`^${runPrefix}_map/[0-9a-f-]{36}/manifest\\.json$`).test(exported.details?.Key) &&
      exported.manifest.ResultFiles.FAILED.length === 0 &&
      exported.ids.length === exec.items.length && exported.ids.every((id, k) => id === k),
    JSON.stringify({ ...exported, ids: exported.ids?.length }).slice(0, 400),
  );

  const bodies = [];
  let wrong = [];
  await pool(exec.items, 32, async (item, k) => {
    const got = (await getText(s3, DST, item.output_key).catch(() => Buffer.alloc(0))).toString('utf8');
    bodies[k] = got;
    if (got !== expected[k]) wrong.push(item.output_key);
  });
  check(
    `${label}: every merged CSV is exactly header once + its batch's rows in key order`,
    wrong.length === 0,
    wrong.length ? `${wrong.length} differ, first ${wrong[0]}` : `${bodies.length} outputs`,
  );
  const seen = new Map();
  for (const body of bodies) {
    for (const line of body.split('\n').slice(1)) if (line) seen.set(line, (seen.get(line) ?? 0) + 1);
  }
  const once = entries.every((e) => seen.get(e.row.trimEnd()) === 1) && seen.size === entries.length;
  check(`${label}: all ${FILES} data rows appear exactly once across the outputs`, once, `${seen.size} distinct rows`);

  const merged = (await getText(s3, DST, `${runPrefix}merged.csv`).catch(() => Buffer.alloc(0))).toString('utf8');
  check(
    `${label}: single_output merged.csv = header once + every row in key order`,
    merged === HEADER + expected.map((b) => b.slice(HEADER.length)).join(''),
    `${Buffer.byteLength(merged)} bytes`,
  );

  let report = null;
  try {
    report = JSON.parse((await getText(s3, DST, `${runPrefix}report.json`)).toString('utf8'));
  } catch (err) {
    report = { error: err.message };
  }
  check(
    `${label}: report.json totals match`,
    report.total_files === FILES && report.merged_files === FILES && report.rows === FILES && report.skipped_files === 0 &&
      report.total_batches === expected.length && report.failed_batches?.length === 0 &&
      report.outputs?.length === expected.length && report.merged_key === `${runPrefix}merged.csv`,
    JSON.stringify({ ...report, outputs: report.outputs?.length, skipped: report.skipped?.length, requests: undefined }).slice(0, 400),
  );
  return { bodies, merged, report };
}

async function batchOverlap(s3, runName, items) {
  const intervals = [];
  await pool(items, 32, async (item) => {
    const key = `merged-csvs/${runName}/_results/batch-${String(item.batch_id).padStart(5, '0')}.json`;
    const result = JSON.parse((await getText(s3, DST, key)).toString('utf8'));
    intervals.push([result.started_at_ms, result.finished_at_ms]);
  });
  return maxOverlap(intervals);
}

// -------------------------------------------------------------------- main

async function main() {
  tmpDir = await fsp.mkdtemp(path.join(os.tmpdir(), 's3mm-e2e-'));
  await fsp.mkdir(path.join(tmpDir, 'logs'));
  await fsp.writeFile(path.join(tmpDir, 'aws-config-empty'), '');
  await fsp.writeFile(path.join(tmpDir, 'aws-credentials-empty'), '');
  const s3Root = path.join(tmpDir, 's3');
  log(`files ${FILES}, batch size ${BATCH_SIZE}, csv-merger processes ${MERGERS}, fault rate ${FAULT_RATE}, binaries target/${args.profile}, work dir ${tmpDir}`);
  for (const name of ['local-s3', 'mover', 'batch-generator', 'csv-merger', 'results-aggregator']) {
    if (!fs.existsSync(binary(name))) throw new Error(`${binary(name)} is missing: build the binaries first (run.sh does)`);
  }
  const t0 = Date.now();

  let server = await startLocalS3('local-s3', s3Root, ['--latency-ms', String(LATENCY_MS)]);
  let s3 = s3Client(server.endpoint);
  log(`local-s3 at ${server.endpoint}`);
  const emulator = await Emulator.start();
  log(`cargo lambda watch --only-lambda-apis on 127.0.0.1:${emulator.port} (${elapsed(t0)})`);

  // mergerEnv: an object, or a function of the csv-merger's index.
  const fleet = (endpoint, mergerEnv = {}) => {
    const env = { AWS_ENDPOINT_URL: endpoint };
    emulator.startFunction('mover', 2, {
      ...env,
      SOURCE_BUCKET: MOVER_SRC,
      SOURCE_PREFIX: 'incoming/',
      DEST_BUCKET: MOVER_DST,
      DEST_PREFIX: 'archive/',
      FETCH_CONCURRENCY: '16',
    });
    emulator.startFunction('batch-generator', 1, { ...env, BATCH_SIZE: '1000' });
    emulator.startFunction('results-aggregator', 1, { ...env, FETCH_CONCURRENCY: '32' });
    const merger = (i) => ({ ...env, FETCH_CONCURRENCY: '64', ...(typeof mergerEnv === 'function' ? mergerEnv(i) : mergerEnv) });
    return emulator.startFunction('csv-merger', MERGERS, merger);
  };
  fleet(server.endpoint);
  await sleep(1500);
  check('every Lambda runtime process starts and stays up', emulator.deadFunctions().length === 0,
    emulator.deadFunctions().map((c) => `${c.label} ${c.exitInfo}: ${tail(c.logPath, 3)}`).join('; '));

  const machine = new Machine(emulator, s3);
  check(
    'the definition with the ItemReader substitution loads in aws-local-stepfunctions',
    (() => {
      try {
        new StateMachine(machine.split.rewritten);
        return true;
      } catch (err) {
        log(err.message);
        return false;
      }
    })(),
    `Map ${machine.split.mapName}: ItemReader -> ItemsPath $$.ItemReader.Items`,
  );

  await moverPhase(emulator, s3);

  for (const bucket of [SRC, DST]) await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  await errorPathsPhase(machine, s3);

  let t = Date.now();
  const entries = await seed(s3, SRC, 'csvs/', FILES);
  log(`seeded ${FILES} CSV files in ${elapsed(t)}`);

  // Run 1: clean.
  const input = (name) => ({
    source_bucket: SRC,
    source_prefix: 'csvs/',
    dest_bucket: DST,
    dest_prefix: 'merged-csvs/',
    batch_size: BATCH_SIZE,
    single_output: true,
  });
  emulator.resetStats();
  t = Date.now();
  const run1 = await machine.execute('e2e-clean', input('e2e-clean'));
  const run1Secs = elapsed(t);
  const stats1 = structuredClone(emulator.stats);
  log(`clean run: ${run1Secs}; invocations ${JSON.stringify(stats1)}`);
  const clean = await verifyRun(s3, 'e2e-clean', entries, run1, 'clean run');
  if (clean) {
    const maxConcurrency = Math.min(machine.definition.States[machine.split.mapName].MaxConcurrency, run1.items.length, MERGERS);
    const overlap = await batchOverlap(s3, 'e2e-clean', run1.items);
    const inFlight = stats1['csv-merger']?.maxInFlight ?? 0;
    console.log(`# max concurrent csv-merger: ${inFlight} invocations in flight (runner), ${overlap} executing at once (from the binaries' own start/finish times)`);
    check(
      `clean run: ${maxConcurrency} csv-merger invocations run at once (MaxConcurrency)`,
      inFlight === maxConcurrency && overlap === maxConcurrency,
      `in flight ${inFlight}, executing at once ${overlap}`,
    );
    check('clean run: one csv-merger invocation per batch', stats1['csv-merger']?.invocations === run1.items.length,
      `${stats1['csv-merger']?.invocations} invocations, ${run1.items.length} batches`);
  }

  // Run 2: the same sources, local-s3 restarted on the same data with
  // random faults (503 SlowDown, 500, dropped connections, 200-with-error
  // copies at FAULT_RATE); the csv-mergers reach it through a proxy that
  // also answers SlowDown to the manifest read of the first attempt of every
  // 5th batch, and with 3 SDK attempts instead of 10, so S3 trouble reaches
  // the state machine as TransientS3Error; and a Lambda throttle before the
  // first attempt of every 10th batch.
  await emulator.stopFleet();
  const counters1 = await server.stop();
  log(`local-s3 (clean) requests: ${JSON.stringify(counters1?.requests ?? {})}`);
  server = await startLocalS3('local-s3-faults', s3Root, ['--latency-ms', String(LATENCY_MS), '--fault-rate', String(FAULT_RATE), '--seed', '7']);
  s3 = s3Client(server.endpoint);
  machine.s3 = s3;
  const refusedBatches = new Set();
  const refuseManifest = (method, url) => {
    const m = method === 'GET' && /\/e2e-faults\/_manifests\/batch-(\d+)\.json/.exec(url);
    if (!m || Number(m[1]) % 5 !== 3) return false;
    const refuse = machine.attempts.get(`MergeBatch:${Number(m[1])}:e2e-faults`) === 1;
    if (refuse) refusedBatches.add(Number(m[1]));
    return refuse;
  };
  // One csv-merger is SIGKILLed mid-batch: the one that reads KILL_BATCH's
  // manifest, once it has asked for KILL_AFTER of that batch's sources. Each
  // csv-merger has its own proxy, so a request names the process that made it.
  const KILL_BATCH = 2; // neither refused (id % 5 == 3) nor throttled (id % 10 == 0)
  const KILL_AFTER = 20;
  const kill = { done: null, gets: 0, signal: null, resultBefore: null, attempts: 0 };
  const mergers = [];
  const serving = [];
  const killMerger = async (i) => {
    const victim = mergers[i];
    victim.stopping = true; // not a crash of its own: the finally block leaves it out
    const gone = new Promise((resolve) => victim.once('exit', resolve));
    process.kill(-victim.pid, 'SIGKILL');
    await gone;
    kill.signal = victim.exitInfo;
    kill.resultBefore = await exists(s3, DST, `merged-csvs/e2e-faults/_results/batch-${String(KILL_BATCH).padStart(5, '0')}.json`);
    machine.crash(
      `MergeBatch:${KILL_BATCH}:e2e-faults`,
      functionError({ errorType: 'Runtime.ExitError', errorMessage: `RequestId: e2e Error: Runtime exited with error: ${victim.exitInfo}` }),
    );
    // Lambda starts a new execution environment for the next invocation.
    mergers[i] = emulator.startOne('csv-merger', i, mergerEnvFor(i), '-restarted');
  };
  const observe = (i) => (method, url) => {
    const manifest = method === 'GET' && /\/e2e-faults\/_manifests\/batch-(\d+)\.json/.exec(url);
    if (manifest) serving[i] = Number(manifest[1]);
    if (!kill.done && serving[i] === KILL_BATCH && method === 'GET' && url.startsWith(`/${SRC}/csvs/`) && ++kill.gets === KILL_AFTER) {
      kill.done = killMerger(i).catch((err) => {
        kill.error = err;
      });
      return true;
    }
    return refuseManifest(method, url);
  };
  const proxies = [];
  for (let i = 0; i < MERGERS; i++) proxies.push(await startS3Proxy(server.endpoint, observe(i)));
  const mergerEnvFor = (i) => ({ AWS_ENDPOINT_URL: proxies[i].endpoint, AWS_MAX_ATTEMPTS: '3' });
  mergers.push(...fleet(server.endpoint, mergerEnvFor));
  await sleep(1500);
  check('every Lambda runtime process restarts against the faulty local-s3', emulator.deadFunctions().length === 0,
    emulator.deadFunctions().map((c) => `${c.label} ${c.exitInfo}`).join('; '));
  emulator.resetStats();
  let throttles = 0;
  machine.beforeInvoke = async (state, fn, payload, attempt) => {
    if (fn === 'csv-merger' && attempt === 1 && payload.batch.batch_id % 10 === 0) {
      throttles++;
      const err = new Error('{"errorType":"TooManyRequestsException","errorMessage":"Rate Exceeded."}');
      err.name = 'Lambda.TooManyRequestsException';
      throw err;
    }
  };
  t = Date.now();
  const run2 = await machine.execute('e2e-faults', input('e2e-faults'));
  const run2Secs = elapsed(t);
  machine.beforeInvoke = null;
  await kill.done;
  const stats2 = structuredClone(emulator.stats);
  log(`fault run: ${run2Secs}; invocations ${JSON.stringify(stats2)}; retries ${JSON.stringify(run2.retried)}`);
  const faulty = await verifyRun(s3, 'e2e-faults', entries, run2, 'fault run');
  if (clean && faulty) {
    const same = clean.bodies.length === faulty.bodies.length && clean.bodies.every((b, k) => b === faulty.bodies[k]) && clean.merged === faulty.merged;
    check('fault run: output bytes identical to the clean run', same);
  }
  const merger2 = stats2['csv-merger'] ?? { invocations: 0, errors: {} };
  const expectedRefused = (run2.items ?? []).filter((it) => it.batch_id % 5 === 3).length;
  check(
    'fault run: csv-merger was re-invoked by Retry after TransientS3Error',
    refusedBatches.size === expectedRefused && expectedRefused > 0 &&
      (merger2.errors.TransientS3Error ?? 0) >= expectedRefused &&
      merger2.invocations >= (run2.items?.length ?? 0) + (merger2.errors.TransientS3Error ?? 0),
    `${merger2.invocations} invocations for ${run2.items?.length} batches, errors ${JSON.stringify(merger2.errors)}, ` +
      `${refusedBatches.size} batches' first attempt refused by the proxy`,
  );
  check(
    'fault run: Lambda throttles (Lambda.TooManyRequestsException) were retried',
    throttles > 0 && (run2.retried?.MergeBatch ?? 0) >= throttles,
    `${throttles} throttles, MergeBatch retried ${run2.retried?.MergeBatch ?? 0} times`,
  );
  check(
    `fault run: a csv-merger SIGKILLed mid-batch (after ${KILL_AFTER} of batch ${KILL_BATCH}'s source GETs) failed as Runtime.ExitError and was retried to completion`,
    kill.done !== null && !kill.error && kill.signal === 'signal SIGKILL' && kill.resultBefore === false &&
      (stats2['csv-merger']?.errors?.['Runtime.ExitError'] ?? 0) === 1 &&
      machine.attempts.get(`MergeBatch:${KILL_BATCH}:e2e-faults`) >= 2,
    JSON.stringify({ ...kill, done: kill.done !== null, error: kill.error?.message, attempts: machine.attempts.get(`MergeBatch:${KILL_BATCH}:e2e-faults`) }),
  );
  await emulator.stopFleet();
  await Promise.all(proxies.map((p) => p.close()));
  const counters2 = await server.stop();
  const injected = counters2?.faults ?? {};
  const faultCount = typeof injected === 'number' ? injected : Object.values(injected).reduce((a, b) => a + (Number(b) || 0), 0);
  check('fault run: local-s3 injected faults', faultCount > 0, JSON.stringify(injected));

  log(`total ${elapsed(t0)}`);
}

let exitCode = 0;
try {
  await main();
} catch (err) {
  check('the run completes without an unexpected error', false, err?.stack ?? String(err));
} finally {
  // Processes that died on their own (a failed init, a crash) say why in their logs.
  const crashed = [...started].filter((c) => c.exited && !c.stopping);
  await stopAll();
  for (const c of crashed) console.log(`# ${c.label} exited by itself (${c.exitInfo}); its log ends:\n${tail(c.logPath, 10).replace(/^/gm, '#   ')}`);
  for (const r of results.filter((r) => !r.ok)) log(`FAILED: ${r.name}`);
  const anyFailed = results.length === 0 || results.some((r) => !r.ok);
  if (tmpDir && !args.keep && !anyFailed) await fsp.rm(tmpDir, { recursive: true, force: true });
  else if (tmpDir) log(`kept ${tmpDir} (process logs in logs/, local-s3 data in s3/)`);
  const failed = results.filter((r) => !r.ok).length;
  exitCode = failed || results.length === 0 ? 1 : 0;
  console.log(`${results.length - failed} passed, ${failed} failed`);
}
process.exit(exitCode);
