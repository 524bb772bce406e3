// stack.mjs - the real thing the browser tests run against, all on loopback and random ports,
// in a temporary directory: mosquitto, the project's fake Midtrans, vendd (API_TOKEN set, a
// fresh SQLite file) and, when a test asks, vmsim as VM01. stop() ends every process it
// started and removes the directory, so the suite can run twice in a row.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function tcpReady(port) {
  return new Promise((resolve) => {
    const c = net.connect({ port, host: '127.0.0.1' });
    c.on('connect', () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

async function until(what, fn, ms) {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

export function findMosquitto() {
  for (const p of ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto']) {
    if (fs.existsSync(p)) return p;
  }
  return null;
}

export class Stack {
  constructor(bins) {
    this.bins = bins; // {vendd, fake, vmsim, mosquitto, mosquittoPub}
    this.procs = [];
    this.token = randomBytes(16).toString('hex');
    this.fakeKey = 'SB-Mid-server-browser-tests';
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vendd-browser-'));
    // A crash of the runner must not leave processes behind.
    this.onExit = () => { for (const p of this.procs) { try { p.child.kill('SIGKILL'); } catch { /* gone */ } } };
    process.on('exit', this.onExit);
  }

  log(name) { return path.join(this.dir, `${name}.log`); }

  spawn(name, cmd, args, env) {
    const out = fs.openSync(this.log(name), 'a');
    // A clean environment, but the sanitizers' options pass (the ASan build runs this too).
    const keep = Object.fromEntries(['PATH', 'ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS']
      .filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]]));
    const child = spawn(cmd, args, { env: { ...keep, ...env }, stdio: ['ignore', out, out] });
    fs.closeSync(out);
    const p = { name, child, exited: null };
    child.on('exit', (code, sig) => { p.exited = { code, sig }; });
    this.procs.push(p);
    return p;
  }

  async start() {
    // mosquitto: as root it would switch to user "mosquitto"; name ourselves instead.
    this.mqttPort = await freePort();
    const user = os.userInfo().username;
    const conf = path.join(this.dir, 'mosquitto.conf');
    fs.writeFileSync(conf, `user ${user}\nlistener ${this.mqttPort} 127.0.0.1\nallow_anonymous true\n` +
      'persistence false\nsys_interval 1\nlog_type error\nlog_type warning\nlog_type notice\n');
    this.broker = this.spawn('mosquitto', this.bins.mosquitto, ['-c', conf]);
    await until('mosquitto', async () => this.alive(this.broker) && tcpReady(this.mqttPort), 10000);

    // The fake Midtrans notifies vendd's webhook; vendd's port is chosen first.
    this.port = await freePort();
    this.base = `http://127.0.0.1:${this.port}`;
    this.fake = this.spawn('fake-midtrans', this.bins.fake, ['--port', '0', '--quiet', '--server-key', this.fakeKey,
      '--notify-url', `${this.base}/api/payments/webhook`]);
    await until('the fake Midtrans', async () => {
      const m = /^fake-midtrans listening on 127\.0\.0\.1:(\d+)$/m.exec(fs.readFileSync(this.log('fake-midtrans'), 'utf8'));
      if (m) this.fakePort = Number(m[1]);
      return this.alive(this.fake) && !!m;
    }, 10000);
    this.fakeBase = `http://127.0.0.1:${this.fakePort}`;

    this.vendd = this.spawn('vendd', this.bins.vendd, [], {
      PORT: String(this.port),
      HOST: '127.0.0.1',
      DATABASE_URL: `sqlite:${path.join(this.dir, 'vendd.db')}`,
      MQTT_BROKER_URL: `mqtt://127.0.0.1:${this.mqttPort}`,
      MACHINE_ID: 'VM01',
      API_TOKEN: this.token,
      MIDTRANS_SERVER_KEY: this.fakeKey,
      MIDTRANS_API_BASE: this.fakeBase,
      MIDTRANS_SNAP_BASE: `${this.fakeBase}/snap/v1`,
      ORDER_RATE_PER_MIN: '1000',
      DISPENSE_RESULT_GRACE_MS: '1000',
    });
    await until('vendd to answer /health with the broker connected', async () => {
      if (!this.alive(this.vendd)) throw new Error(`vendd exited: ${this.tail('vendd')}`);
      try {
        const r = await fetch(`${this.base}/health`);
        return r.ok && (await r.json()).mqtt_connected === true;
      } catch { return false; }
    }, 15000);
  }

  alive(p) { return p && p.exited === null; }

  tail(name, lines = 30) {
    try { return fs.readFileSync(this.log(name), 'utf8').split('\n').slice(-lines).join('\n'); } catch { return ''; }
  }

  // vmsim as VM01: two slots, drops every time, answers in 300 ms.
  startVmsim() {
    const state = path.join(this.dir, 'vmsim');
    fs.mkdirSync(state, { recursive: true });
    this.vmsim = this.spawn('vmsim', this.bins.vmsim, ['--id', 'VM01', '--slots', '2', '--stock', '10',
      '--motor-ms', '300', '--drop-prob', '1', '--telemetry-ms', '2000', '--state-dir', state],
    { MQTT_BROKER_URL: `mqtt://127.0.0.1:${this.mqttPort}` });
    return this.vmsim;
  }

  // One MQTT message as a machine would send it (mosquitto_pub, QoS 1).
  publish(topic, payload) {
    const r = spawnSync(this.bins.mosquittoPub, ['-h', '127.0.0.1', '-p', String(this.mqttPort), '-q', '1',
      '-t', topic, '-m', payload], { encoding: 'utf8', timeout: 10000 });
    if (r.status !== 0) throw new Error(`mosquitto_pub ${topic}: ${r.stderr || r.error}`);
  }

  // The operator's API, with the bearer token: {status, body}.
  async api(method, p, body) {
    const r = await fetch(`${this.base}${p}`, {
      method,
      headers: { Authorization: `Bearer ${this.token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = text; }
    return { status: r.status, body: json };
  }

  // Stops everything; returns the processes that did not end cleanly (exit status 0 on
  // SIGTERM: a sanitizer's report or a leak makes it another), each with its log's tail.
  async stop(keepLogsIn) {
    process.off('exit', this.onExit);
    const unclean = [];
    for (const p of [...this.procs].reverse()) {
      if (this.alive(p)) {
        p.child.kill('SIGTERM');
        const end = Date.now() + 10000;
        while (this.alive(p) && Date.now() < end) await sleep(50);
        if (this.alive(p)) {
          p.child.kill('SIGKILL');
          while (this.alive(p)) await sleep(50);
          unclean.push(`${p.name} did not stop on SIGTERM within 10 s`);
          continue;
        }
      }
      if (p.exited.code !== 0) unclean.push(`${p.name} exited ${p.exited.code ?? p.exited.sig}:\n${this.tail(p.name, 15)}`);
    }
    if (keepLogsIn) {
      fs.mkdirSync(keepLogsIn, { recursive: true });
      for (const f of fs.readdirSync(this.dir)) {
        if (f.endsWith('.log')) fs.copyFileSync(path.join(this.dir, f), path.join(keepLogsIn, f));
      }
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
    return unclean;
  }
}
