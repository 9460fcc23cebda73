// Describes the machine a benchmark ran on: CPU, cores, memory, Node and server versions, OS,
// CPU idle driver, date — and two calibration figures measured at the start of the run, so runs
// on machines of the same description (a shared 2-core VM is not always as fast) can be compared.
import { spawn, spawnSync } from 'node:child_process';
import { hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import os from 'node:os';

function versionOf(bin, pattern) {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 5_000 });
  if (r.error || r.status !== 0) return undefined;
  const m = `${r.stdout}${r.stderr}`.match(pattern);
  return m ? m[1] : `${r.stdout}`.trim().split('\n')[0];
}

/** The CPU idle driver and, for haltpoll (virtual machines), how long an idle vCPU polls before halting: a halted vCPU takes a hypervisor exit to wake, which every cross-core wakeup on the request path pays. */
function cpuIdle() {
  const read = (f) => {
    try {
      return readFileSync(f, 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  const driver = read('/sys/devices/system/cpu/cpuidle/current_driver');
  if (!driver) return undefined;
  const poll = driver === 'haltpoll' ? read('/sys/module/haltpoll/parameters/guest_halt_poll_ns') : undefined;
  return poll === undefined ? driver : `${driver} (guest_halt_poll_ns ${poll})`;
}

export function machineInfo() {
  const cpus = os.cpus();
  // The one the suites start (libs/testing: NATS_SERVER_BIN, else .cache/, else the machine's).
  const natsBin = createRequire(import.meta.url)('@novamesh/testing').natsServerBinary();
  const redisBin = process.env.REDIS_SERVER_BIN ?? 'redis-server';
  const path = `${process.env.PATH ?? ''}:/usr/sbin:/usr/local/sbin:/usr/local/bin`;
  process.env.PATH = path;
  return {
    cpu: (cpus[0]?.model ?? 'unknown CPU').replace(/\s+/g, ' ').trim(),
    cores: cpus.length,
    memoryBytes: os.totalmem(),
    node: process.version,
    natsServer: versionOf(natsBin, /v(\d+\.\d+\.\d+\S*)/) ?? 'not found',
    redisServer: versionOf(redisBin, /v=(\d+\.\d+\.\d+)/) ?? 'not found',
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    cpuIdle: cpuIdle() ?? 'unknown',
    date: new Date().toISOString(),
  };
}

/** A fixed piece of single-threaded work, the kind the control plane does per message: JSON out and in, and a SHA-256. */
const WORK_ITEM = {
  service: 'payments-api-00042',
  upstreams: Array.from({ length: 4 }, (_, i) => ({
    service: `up-${i}`,
    port: 8080 + i,
    endpoints: [{ address: '127.0.0.1', weight: 1 }],
  })),
};
function cpuScore(ms) {
  const end = performance.now() + ms;
  let n = 0;
  while (performance.now() < end)
    for (let i = 0; i < 100; i++, n++) hash('sha256', JSON.stringify(JSON.parse(JSON.stringify(WORK_ITEM))), 'hex');
  return (n / ms) * 1000;
}

/**
 * Round trips of one byte between this process and a child echoing it back over loopback TCP:
 * each is two wake-ups of a sleeping process, what every hop of a proxied request pays.
 * At most `count` round trips and `ms` milliseconds. Resolves with the round-trip times in µs.
 */
async function pingPong(count, ms) {
  const child = spawn(
    process.execPath,
    [
      '-e',
      "const s=require('net').createServer((c)=>{c.setNoDelay(true);c.on('data',(d)=>c.write(d))}).listen(0,'127.0.0.1',()=>console.log(s.address().port))",
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  try {
    const port = await new Promise((resolve, reject) => {
      child.stdout.once('data', (d) => resolve(Number(String(d).trim())));
      child.once('error', reject);
      setTimeout(() => reject(new Error('the echo process did not start')), 5_000).unref();
    });
    const socket = connect({ port, host: '127.0.0.1', noDelay: true });
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const rtts = [];
    const end = performance.now() + ms;
    for (let i = 0; i < count && performance.now() < end; i++) {
      const t0 = performance.now();
      await new Promise((resolve) => {
        socket.once('data', resolve);
        socket.write('x');
      });
      // The first round trips warm up the connection and the JIT.
      if (i >= 100) rtts.push((performance.now() - t0) * 1000);
    }
    socket.destroy();
    return rtts;
  } finally {
    child.kill();
  }
}

/**
 * Calibration figures for the machine line: single-thread work items per second (`cpuScore`), and
 * loopback ping-pong round-trip p50/p99 between two processes. Undefined members when a part fails.
 */
export async function calibrate() {
  const work = cpuScore(300); // the JIT warms up on a first, unreported pass
  const workPerSec = Math.max(work, cpuScore(700));
  const rtts = await pingPong(5_000, 3_000).catch(() => []);
  rtts.sort((a, b) => a - b);
  const at = (q) => rtts[Math.min(rtts.length - 1, Math.floor(q * rtts.length))];
  return { workPerSec, pingP50Us: rtts.length ? at(0.5) : undefined, pingP99Us: rtts.length ? at(0.99) : undefined };
}

function calibrationText(c) {
  if (!c) return '';
  const us = (v) => (v === undefined ? '?' : `${Math.round(v)} µs`);
  return `; calibration: ${Math.round(c.workPerSec / 100) / 10}k work items/s on one core (JSON out and in + SHA-256 of a small object), loopback ping-pong between two processes p50 ${us(c.pingP50Us)} / p99 ${us(c.pingP99Us)}`;
}

export function machineLine(m) {
  const gib = (m.memoryBytes / 1024 ** 3).toFixed(1);
  return `${m.cpu}, ${m.cores} cores, ${gib} GiB RAM, Node ${m.node}, nats-server ${m.natsServer}, redis-server ${m.redisServer}, ${m.os}, CPU idle driver ${m.cpuIdle ?? 'unknown'}; ${m.date.slice(0, 16).replace('T', ' ')} UTC${calibrationText(m.calibration)}`;
}

/** "2026-11-27 on AMD EPYC, 2 cores, 23.5 GiB, Node …, nats-server …, redis-server …; calibration: …" for a doc section. */
export function measuredOn(m) {
  return `${m.date.slice(0, 10)} on ${m.cpu}, ${m.cores} cores, ${(m.memoryBytes / 1024 ** 3).toFixed(1)} GiB, Node ${m.node}, nats-server ${m.natsServer}, redis-server ${m.redisServer}${calibrationText(m.calibration)}`;
}
