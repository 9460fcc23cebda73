const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const CLEAR_LINE = '\r\x1b[2K';

export interface SpinnerStream {
  write(text: string): unknown;
}

/**
 * Shows `text` with a spinner on `stream` while `work` runs, then erases it. Does nothing when
 * disabled (stderr is not a terminal), so pipes and logs never see control characters. One
 * spinner at a time per stream; not meant to be nested.
 */
export async function withSpinner<T>(stream: SpinnerStream, enabled: boolean, text: string, work: Promise<T>): Promise<T> {
  if (!enabled) return work;
  let frame = 0;
  const draw = () => {
    stream.write(`${CLEAR_LINE}${FRAMES[frame++ % FRAMES.length]} ${text}`);
  };
  // Fast answers (the usual case) should not flicker: start drawing only after a short delay.
  let timer: NodeJS.Timeout | undefined;
  const delay = setTimeout(() => {
    draw();
    timer = setInterval(draw, 80);
  }, 150);
  try {
    return await work;
  } finally {
    clearTimeout(delay);
    if (timer) {
      clearInterval(timer);
      stream.write(CLEAR_LINE);
    }
  }
}
