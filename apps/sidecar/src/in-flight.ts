import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { DownstreamRequest, DownstreamResponse } from './forward';
import { sendLocalReply } from './local-reply';
import { refuseUpgrade } from './upgrade';

/** The reason of an OVERLOADED local reply, on every path that sheds. */
export function overloadedReason(max: number): string {
  return `this sidecar already handles SIDECAR_MAX_IN_FLIGHT (${max}) requests`;
}

/**
 * Bounds the requests a sidecar handles at once, inbound and outbound together
 * (SIDECAR_MAX_IN_FLIGHT). Past the bound a request gets 503 OVERLOADED at once, before any
 * parsing, routing or upstream work: a saturated sidecar answers fast instead of queueing until
 * everything times out. Single-threaded use; owned by main, shared by the listeners.
 */
export class InFlightLimit {
  active = 0;

  constructor(
    readonly max: number,
    /** Called for every request shed, with its direction (metrics, rate-limited logging). */
    private readonly onShed: (direction: 'inbound' | 'outbound') => void,
  ) {}

  /** Takes a slot for one request, or counts it as shed (false): the caller answers OVERLOADED. Free a slot taken with {@link release}. */
  tryAcquire(direction: 'inbound' | 'outbound'): boolean {
    if (this.active >= this.max) {
      this.onShed(direction);
      return false;
    }
    this.active++;
    return true;
  }

  release(): void {
    this.active--;
  }

  /** Wraps a listener's handler: admits up to `max` requests, sheds the rest; the slot is freed when `serve` settles. */
  guard(
    direction: 'inbound' | 'outbound',
    serve: (req: DownstreamRequest, res: DownstreamResponse) => Promise<void>,
  ): (req: DownstreamRequest, res: DownstreamResponse) => void {
    return (req, res) => {
      if (this.active >= this.max) {
        sendLocalReply(req, res, 'OVERLOADED', overloadedReason(this.max));
        this.onShed(direction);
        return;
      }
      this.active++;
      void serve(req, res).finally(() => this.active--);
    };
  }

  /**
   * Wraps a listener's WebSocket upgrade handler: an upgrade is a request like any other, and a
   * tunnel one still being served, so its slot is held until the client's connection closes (the
   * tunnel is over, or the refusal or declined answer is out); past the bound it gets 503 OVERLOADED.
   */
  guardUpgrade(
    direction: 'inbound' | 'outbound',
    serve: (req: IncomingMessage, socket: Socket, head: Buffer) => void,
  ): (req: IncomingMessage, socket: Socket, head: Buffer) => void {
    return (req, socket, head) => {
      if (socket.destroyed) return;
      if (this.active >= this.max) {
        refuseUpgrade(socket, 'OVERLOADED', overloadedReason(this.max));
        this.onShed(direction);
        return;
      }
      this.active++;
      socket.once('close', () => this.active--);
      serve(req, socket, head);
    };
  }
}
