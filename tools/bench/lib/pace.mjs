// Sends work at a steady rate, bounded in count, in flight and in time.
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Calls `send(i)` for i = 0 … total-1 at `rate` per second. The number of sends due is computed
 * from the start time, so timer jitter never accumulates into drift; a late tick sends what is
 * due at once. `send` returns a promise; at most `maxInFlight` are pending (a tick that hits the
 * limit counts as blocked and sends the rest later). Stops after `maxSeconds` whatever is left.
 * `onLag(µs)` gets how late each send is against its schedule; `onTick(sent)` runs every loop.
 * Resolves when the last one is sent: { sent, blocked, t0, tSent, inFlight() }.
 */
export async function pacedSend({ rate, total, maxInFlight, maxSeconds, send, onLag = () => undefined, onTick = () => undefined }) {
  let active = 0;
  let blocked = 0;
  const t0 = performance.now();
  const interval = 1000 / rate;
  const hardEnd = t0 + maxSeconds * 1000;
  let sent = 0;
  while (sent < total && performance.now() < hardEnd) {
    const due = Math.min(total, Math.floor((performance.now() - t0) / interval) + 1);
    while (sent < due) {
      if (active >= maxInFlight) {
        blocked++;
        break;
      }
      onLag(Math.max(1, Math.round((performance.now() - (t0 + sent * interval)) * 1000)));
      active++;
      send(sent++).finally(() => {
        active--;
      });
    }
    onTick(sent);
    await sleep(1);
  }
  return { sent, blocked, t0, tSent: performance.now(), inFlight: () => active };
}

/** Waits, at most until `until` (performance.now() time), while `pending()` holds; `onTick` every 20 ms. */
export async function drain({ until, pending, onTick = () => undefined }) {
  while (performance.now() < until && pending()) {
    onTick();
    await sleep(20);
  }
}

/**
 * Runs `start(i)` for i = 0 … count-1 with at most `inFlight` pending; starts nothing after
 * `deadlineAt` (performance.now() time). Counts into `stats`: acked (resolved), errors
 * (rejected, with firstError) and attempted. Resolves with `stats` once nothing is pending.
 */
export function boundedAll({ count, inFlight, deadlineAt, stats, start }) {
  return new Promise((resolveAll) => {
    let next = 0;
    let active = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      resolveAll(stats);
    };
    const pump = () => {
      while (active < inFlight && next < count && performance.now() < deadlineAt) {
        const p = start(next++);
        active++;
        p.then(
          () => {
            stats.acked++;
          },
          (e) => {
            stats.errors++;
            stats.firstError ??= String(e?.message ?? e);
          },
        ).finally(() => {
          active--;
          pump();
        });
      }
      stats.attempted = next;
      if (active === 0 && (next >= count || performance.now() >= deadlineAt)) finish();
    };
    pump();
  });
}
