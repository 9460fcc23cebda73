// Progress on stderr: one line redrawn in place (\r) on a terminal, plain periodic lines otherwise.
const tty = Boolean(process.stderr.isTTY);
const SPIN = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
let active; // the Progress currently owning the terminal line

function clearLine() {
  if (tty && active?.drawn) {
    process.stderr.write('\r\x1b[2K');
    active.drawn = false;
  }
}

/** Prints a message on its own line without garbling a progress bar. */
export function note(msg) {
  clearLine();
  process.stderr.write(`${msg}\n`);
}

export class Progress {
  /**
   * @param {string} label what is going on
   * @param {number|undefined} total units to do; undefined shows a spinner instead of a bar
   */
  constructor(label, total, { intervalMs = 2_000 } = {}) {
    this.label = label;
    this.total = total;
    this.intervalMs = intervalMs;
    this.started = performance.now();
    this.lastDraw = 0;
    this.frame = 0;
    this.drawn = false;
    if (active && active !== this) active.finish();
    active = this;
    if (!tty) process.stderr.write(`${label}…\n`);
  }

  update(done, extra = '') {
    const now = performance.now();
    if (now - this.lastDraw < (tty ? 100 : this.intervalMs)) return;
    this.lastDraw = now;
    const secs = ((now - this.started) / 1000).toFixed(1);
    let body;
    if (this.total) {
      const frac = Math.max(0, Math.min(1, done / this.total));
      const width = 24;
      const full = Math.round(frac * width);
      const bar = `${'█'.repeat(full)}${'░'.repeat(width - full)}`;
      body = `${tty ? bar : ''} ${(frac * 100).toFixed(0).padStart(3)}% ${done.toLocaleString('en-US')}/${this.total.toLocaleString('en-US')}`;
    } else {
      body = tty ? SPIN[this.frame++ % SPIN.length] : '';
    }
    const line = `${this.label} ${body} ${secs}s${extra ? ` ${extra}` : ''}`.replace(/\s+/g, ' ');
    if (tty) {
      process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
      this.drawn = true;
    } else {
      process.stderr.write(`  ${line}\n`);
    }
  }

  finish(msg) {
    clearLine();
    if (active === this) active = undefined;
    if (msg) process.stderr.write(`${msg}\n`);
  }
}

/** A spinner redrawn every 100 ms until `finish(msg)`; finishing twice is harmless. */
export function spinner(label) {
  const spin = new Progress(label);
  const tick = setInterval(() => spin.update(0), 100);
  return {
    finish(msg) {
      clearInterval(tick);
      spin.finish(msg);
    },
  };
}
