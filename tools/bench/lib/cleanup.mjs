// Cleanup that runs however a benchmark ends: normally, by an exception, or by Ctrl-C / SIGTERM.
// Each suite run opens a scope, registers what it started (servers, processes, connections) and
// the scope tears them down in reverse order. Processes still alive when Node exits are killed.
import { rmSync } from 'node:fs';

const openScopes = new Set();
let installed = false;

async function runDefers(defers, log) {
  while (defers.length) {
    const { what, fn } = defers.pop();
    let timer;
    try {
      await Promise.race([
        Promise.resolve().then(fn),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('timed out after 15 s')), 15_000);
        }),
      ]);
    } catch (e) {
      log(`cleanup: ${what} failed: ${e?.message ?? e}`);
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Runs `fn(scope)`; whatever `scope.defer(what, fn)` registered runs afterwards in reverse order,
 * also when `fn` throws. `scope.track(managedProcess)` makes sure the process is killed even if
 * Node exits abruptly; `scope.tempDir(path)` is removed at exit.
 */
export async function withCleanup(fn, log = (m) => process.stderr.write(`${m}\n`)) {
  const scope = {
    defers: [],
    procs: new Set(),
    dirs: new Set(),
    defer(what, f) {
      this.defers.push({ what, fn: f });
    },
    track(proc) {
      this.procs.add(proc);
      return proc;
    },
    tempDir(path) {
      if (path) this.dirs.add(path);
    },
    log,
  };
  openScopes.add(scope);
  try {
    return await fn(scope);
  } finally {
    await runDefers(scope.defers, log);
    killSync(scope);
    openScopes.delete(scope);
  }
}

function killSync(scope) {
  for (const p of scope.procs) {
    try {
      if (p.running) p.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const d of scope.dirs) rmSync(d, { recursive: true, force: true });
}

/** Ctrl-C, SIGTERM and crashes clean up every open scope before the process exits. */
export function installCleanupHandlers(log = (m) => process.stderr.write(`${m}\n`)) {
  if (installed) return;
  installed = true;
  let exiting = false;
  const bail = async (why, code) => {
    if (exiting) return;
    exiting = true;
    log(`\nbench: ${why}; stopping servers and processes…`);
    const hard = setTimeout(() => process.exit(code), 20_000);
    hard.unref();
    for (const s of [...openScopes]) await runDefers(s.defers, log);
    process.exit(code);
  };
  process.on('SIGINT', () => void bail('interrupted', 130));
  process.on('SIGTERM', () => void bail('terminated', 143));
  process.on('uncaughtException', (e) => {
    log(`bench: uncaught exception: ${e?.stack ?? e}`);
    void bail('crashed', 1);
  });
  process.on('unhandledRejection', (e) => {
    log(`bench: unhandled rejection: ${e?.stack ?? e}`);
    void bail('crashed', 1);
  });
  process.on('exit', () => {
    for (const s of openScopes) killSync(s);
  });
}
