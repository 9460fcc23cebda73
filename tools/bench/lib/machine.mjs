// Describes the machine a benchmark ran on: CPU, cores, memory, Node and server versions, OS,
// CPU idle driver, date.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
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
  const natsBin = process.env.NATS_SERVER_BIN ?? 'nats-server';
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

export function machineLine(m) {
  const gib = (m.memoryBytes / 1024 ** 3).toFixed(1);
  return `${m.cpu}, ${m.cores} cores, ${gib} GiB RAM, Node ${m.node}, nats-server ${m.natsServer}, redis-server ${m.redisServer}, ${m.os}, CPU idle driver ${m.cpuIdle ?? 'unknown'}; ${m.date.slice(0, 16).replace('T', ' ')} UTC`;
}

/** "2026-11-27 on AMD EPYC, 2 cores, 23.5 GiB, Node …, nats-server …, redis-server …" for a doc section. */
export function measuredOn(m) {
  return `${m.date.slice(0, 10)} on ${m.cpu}, ${m.cores} cores, ${(m.memoryBytes / 1024 ** 3).toFixed(1)} GiB, Node ${m.node}, nats-server ${m.natsServer}, redis-server ${m.redisServer}`;
}
