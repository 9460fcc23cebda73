// The load generator of the data-plane benchmark, run as its own process (so its CPU is measured
// apart from the proxies'): GET requests over keep-alive connections.
//   closed: `connections` requests always in flight over an undici Pool (each connection sends its
//           next request as soon as the previous answer arrived), for throughput when wrk is missing;
//   open:   `rate` requests per second on a fixed schedule whatever the answers do, for latency,
//           over a raw HTTP/1.1 client (raw-client.mjs: preformatted request bytes, responses
//           framed by Content-Length or chunked encoding) so that the generator's own CPU per
//           request — which competes with the proxies for the same cores — stays small.
//           Latency counts from the *scheduled* send time (coordinated-omission safe: a stall
//           delays every request scheduled meanwhile, and all of that delay is counted); the
//           time from the actual send is kept too, and the generator's own lag behind its schedule.
// Usage: node loadgen.mjs '<json options>'; prints one JSON line with counts and HDR histograms
// (microseconds, compressed base64) when done.
import { createRequire } from 'node:module';
import { Pool } from 'undici';
import { drain, pacedSend } from './pace.mjs';
import { RawClient } from './raw-client.mjs';
import { histogramFactory } from './stats.mjs';

const require = createRequire(import.meta.url);
const hdr = require('hdr-histogram-js');
const opts = JSON.parse(process.argv[2] ?? '{}');
const newHistogram = histogramFactory();
const us = (msNum) => Math.max(1, Math.round(msNum * 1000));

const pool = new Pool(opts.url, { connections: opts.connections, pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: 30_000 });
const headers = opts.host ? { host: opts.host } : {};
const stats = { requests: 0, errors: 0, non200: 0, firstError: undefined, firstStatus: undefined };

/** One request; resolves with the time its answer was complete (never rejects). */
async function once(record) {
  try {
    const r = await pool.request({ path: opts.path ?? '/', method: 'GET', headers });
    await r.body.dump();
    if (record) {
      stats.requests++;
      if (r.statusCode !== 200) {
        stats.non200++;
        stats.firstStatus ??= r.statusCode;
      }
    }
  } catch (e) {
    if (record) {
      stats.errors++;
      stats.firstError ??= `${e?.code ?? ''} ${e?.message ?? e}`.trim();
    }
  }
  return performance.now();
}

async function closedLoop() {
  const total = newHistogram();
  let recording = false;
  let stop = false;
  let t0 = 0;
  let last = 0;
  const worker = async () => {
    while (!stop) {
      const sent = performance.now();
      const rec = recording;
      const done = await once(rec);
      if (rec && recording) {
        total.recordValue(us(done - sent));
        last = done;
      }
    }
  };
  const workers = Array.from({ length: opts.connections }, worker);
  await new Promise((r) => setTimeout(r, opts.warmupSeconds * 1000));
  t0 = performance.now();
  recording = true;
  await new Promise((r) => setTimeout(r, opts.seconds * 1000));
  recording = false;
  stop = true;
  await Promise.all(workers);
  const seconds = (last - t0) / 1000;
  return { seconds, rps: stats.requests / seconds, latency: hdr.encodeIntoCompressedBase64(total) };
}

async function openLoop() {
  const client = new RawClient({ url: opts.url, host: opts.host, path: opts.path, connections: opts.connections, timeoutMs: 30_000 });
  const fromSchedule = newHistogram();
  const fromSend = newHistogram();
  const lagHist = newHistogram();
  const warm = Math.round(opts.rate * opts.warmupSeconds);
  const total = warm + Math.round(opts.rate * opts.seconds);
  let lagUs = 0;
  let pending = 0;
  const { t0, tSent } = await pacedSend({
    rate: opts.rate,
    total,
    maxInFlight: 10_000,
    maxSeconds: opts.warmupSeconds + opts.seconds + 30,
    onLag: (l) => {
      lagUs = l;
    },
    send: (i) => {
      const sent = performance.now();
      const scheduled = sent - lagUs / 1000;
      const record = i >= warm;
      if (record) lagHist.recordValue(lagUs);
      pending++;
      return new Promise((resolve) =>
        client.get((err, status) => {
          const done = performance.now();
          pending--;
          if (record) {
            if (err) {
              stats.errors++;
              stats.firstError ??= err.message;
            } else {
              stats.requests++;
              if (status !== 200) {
                stats.non200++;
                stats.firstStatus ??= status;
              }
              fromSchedule.recordValue(us(done - scheduled));
              fromSend.recordValue(us(done - sent));
            }
          }
          resolve();
        }),
      );
    },
  });
  await drain({ until: performance.now() + 30_000, pending: () => pending > 0 });
  client.close();
  const seconds = (tSent - t0) / 1000 - opts.warmupSeconds;
  return {
    seconds,
    rps: stats.requests / seconds,
    latency: hdr.encodeIntoCompressedBase64(fromSchedule),
    fromSend: hdr.encodeIntoCompressedBase64(fromSend),
    lag: hdr.encodeIntoCompressedBase64(lagHist),
  };
}

const out = opts.mode === 'open' ? await openLoop() : await closedLoop();
await pool.close().catch(() => undefined);
process.stdout.write(`${JSON.stringify({ msg: 'loadgen done', ...stats, ...out })}\n`);
