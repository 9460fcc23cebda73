import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { Inject, Injectable } from '@nestjs/common';
import { followLastValues } from '@novamesh/bus';
import { EffectivePolicyV1, EndpointSetV1, RevocationListV1, streams, subjects, TrustBundleV1 } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { type CompiledSnapshot, checkSnapshot, type FlushBatch, FlushScheduler, MeshView, PublishQueue } from '@novamesh/proxy-config';
import type { ProxyConfigConfig } from './config';
import { readInput } from './inbound';
import { PublishedSnapshotsService, SnapshotTooLargeError } from './published-snapshots.service';
import { CONFIG, JETSTREAM, LOGGER } from './tokens';

/** After a failed publish (NATS away, lost races), the service is rebuilt and retried this much later. */
const RETRY_AFTER_MS = 1_000;

/**
 * Longest the compile runs before giving the event loop back, so the publications it queued go
 * out (and their acks come in) while the rest of a large flush compiles.
 */
const COMPILE_SLICE_MS = 2;

/** What one round of work (from idle to idle) did, for its summary log line. */
interface Round {
  startedAt: number;
  compiled: number;
  compileMs: number;
  published: number;
  failed: number;
}

/**
 * Builds and publishes the proxy snapshots. Follows the inputs — endpoint sets, effective
 * policies, trust bundle, revocation list — into a MeshView; each change marks the snapshots it
 * touches dirty, a FlushScheduler coalesces changes per service (each dirty service waits for
 * the debounce of quiet after its last change, at most the maximum delay after its first), and
 * each flush streams the services due through compile → check → publish: it compiles them in
 * slices of a few milliseconds (endpoint-touched ones first), handing each changed snapshot to a
 * PublishQueue right away (bounded in flight, endpoint work first, one publish per service at a
 * time, never waiting on another service's ack), so the first snapshots are on the wire while the
 * last ones still compile — and, for a burst of inputs about different services (a mesh-wide
 * policy republished service by service), while the last inputs are still arriving. An
 * inconsistent snapshot is never published: the previous one stays, and the issues are logged
 * (once per distinct set). Each snapshot is logged at debug level; one info line
 * sums up each round of work (from idle to idle).
 */
@Injectable()
export class SnapshotBuilderService {
  private readonly view = new MeshView();
  private readonly scheduler: FlushScheduler;
  private readonly queue: PublishQueue<CompiledSnapshot>;
  /** Flushed services waiting for their compile, endpoint-touched ones in their own lane. */
  private readonly toCompile = { urgent: new Set<string>(), normal: new Set<string>() };
  private compileScheduled = false;
  private stopped = false;
  private round: Round | undefined;
  /** Last diagnostics/issues logged per service, so a steady problem is logged once. */
  private readonly reported = new Map<string, string>();
  /** Hash of the snapshot per service that was too large to publish, so it is logged once. */
  private readonly tooLarge = new Map<string, string>();
  private readonly stops: (() => Promise<void>)[] = [];
  /** Aborted by stop(): ends the follows, also one still loading its retained values. */
  private readonly ending = new AbortController();
  private readonly retries = new Set<NodeJS.Timeout>();
  private readonly log: Logger;

  constructor(
    @Inject(JETSTREAM) private readonly js: JetStreamClient,
    @Inject(CONFIG) private readonly config: ProxyConfigConfig,
    @Inject(LOGGER) logger: Logger,
    private readonly published: PublishedSnapshotsService,
  ) {
    this.log = logger.child({ component: 'snapshot-builder' });
    this.scheduler = new FlushScheduler({ debounceMs: config.debounceMs, maxDelayMs: config.maxDelayMs, flush: (b) => this.flush(b) });
    this.queue = new PublishQueue<CompiledSnapshot>({
      maxInFlight: config.maxInFlight,
      run: async (service, compiled) => {
        const outcome = await this.published.publish(compiled);
        this.tooLarge.delete(service);
        if (!outcome.published) return;
        if (this.round) this.round.published++;
        this.log.debug(
          {
            meshService: service,
            version: outcome.version,
            hash: compiled.hash.slice(0, 12),
            upstreams: compiled.content.upstreams.length,
          },
          'snapshot published',
        );
      },
      onError: (service, _compiled, err) => {
        if (this.stopped) return;
        if (this.round) this.round.failed++;
        if (err instanceof SnapshotTooLargeError) {
          // Retrying cannot help until the content changes (the next input change rebuilds it).
          if (this.tooLarge.get(service) !== err.hash)
            this.log.error({ meshService: service, bytes: err.bytes, maxPayload: err.maxPayload }, err.message);
          this.tooLarge.set(service, err.hash);
          return;
        }
        this.log.warn({ meshService: service, err }, `snapshot publish failed; retrying in ${RETRY_AFTER_MS}ms`);
        const t = setTimeout(() => {
          this.retries.delete(t);
          this.scheduler.mark([service], true);
        }, RETRY_AFTER_MS);
        this.retries.add(t);
      },
    });
  }

  /**
   * Loads every input's retained values, then builds. Nothing is published until all inputs are
   * loaded: a snapshot built from half the mesh would take upstreams away from sidecars.
   */
  async start(): Promise<void> {
    this.scheduler.hold();
    const follow = async (stream: string, filterSubject: string, onMessage: (m: JsMsg) => void) => {
      if (this.ending.signal.aborted) return;
      const f = await followLastValues({
        js: this.js,
        stream,
        filterSubject,
        logger: this.log,
        onMessage,
        recheckMs: this.config.streamRecheckMs,
        // Snapshots from half the inputs would take upstreams and authorization rules away.
        waitForAll: true,
        signal: this.ending.signal,
      });
      this.stops.push(f.stop);
    };
    await follow(streams.ca, subjects.caBundle, (m) => {
      const bundle = readInput(this.log, TrustBundleV1, 'trust bundle', m);
      if (bundle) this.scheduler.mark(this.view.applyBundle(bundle));
    });
    await follow(streams.ca, subjects.caRevoked, (m) => {
      const list = readInput(this.log, RevocationListV1, 'revocation list', m);
      if (list) this.scheduler.mark(this.view.applyRevocations(list));
    });
    await follow(streams.config, subjects.effectivePolicyEach, (m) => {
      const policy = readInput(this.log, EffectivePolicyV1, 'effective policy', m, true);
      if (policy) this.scheduler.mark(this.view.applyPolicy(policy));
    });
    await follow(streams.endpoints, subjects.endpointsEach, (m) => {
      const set = readInput(this.log, EndpointSetV1, 'endpoint set', m, true);
      if (set) this.scheduler.mark(this.view.applyEndpoints(set), true);
    });
    if (this.ending.signal.aborted) return;
    this.log.info({ services: this.view.services().length }, 'inputs loaded');
    // MESH_PROXY created again (it holds none of the snapshots): build and publish every one anew.
    this.published.onReset(() => this.scheduler.mark(this.view.services()));
    // Something else stored on a service's subject (a stray publish): its sidecars must get the right snapshot back.
    this.published.onForeign((service) => this.scheduler.mark([service], true));
    this.scheduler.release();
  }

  /** Stops following and building; lets publications in flight finish (bounded by the caller's drain timeout). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.ending.abort();
    this.scheduler.stop();
    this.toCompile.urgent.clear();
    this.toCompile.normal.clear();
    for (const t of this.retries) clearTimeout(t);
    await Promise.all(this.stops.map((s) => s()));
    await this.queue.idle();
  }

  /** Adds the batch to what waits for its compile (an urgent mark moves a service ahead) and starts compiling. */
  private flush(batch: FlushBatch): void {
    const { urgent, normal } = this.toCompile;
    for (const service of batch.urgent) {
      normal.delete(service);
      urgent.add(service);
    }
    for (const service of batch.normal) if (!urgent.has(service)) normal.add(service);
    this.round ??= { startedAt: performance.now(), compiled: 0, compileMs: 0, published: 0, failed: 0 };
    // A compile in progress (its next slice scheduled) takes the new services along.
    if (!this.compileScheduled) this.compileSlice();
  }

  /**
   * Compiles waiting services for at most COMPILE_SLICE_MS, then yields (setImmediate: socket I/O
   * runs in between) and goes on. Each service is compiled from the view as it is when its turn
   * comes, so changes that arrive meanwhile are included.
   */
  private compileSlice(): void {
    this.compileScheduled = false;
    if (this.stopped) return;
    const started = performance.now();
    const round = this.round;
    for (const [lane, urgent] of [
      [this.toCompile.urgent, true],
      [this.toCompile.normal, false],
    ] as const) {
      for (const service of lane) {
        lane.delete(service);
        this.rebuild(service, urgent);
        if (round) round.compiled++;
        if (performance.now() - started >= COMPILE_SLICE_MS) {
          if (round) round.compileMs += performance.now() - started;
          this.compileScheduled = true;
          setImmediate(() => this.compileSlice());
          return;
        }
      }
    }
    if (round) round.compileMs += performance.now() - started;
    if (round) void this.queue.idle().then(() => this.endRound(round));
  }

  private rebuild(service: string, urgent: boolean): void {
    const compiled = this.view.compile(service);
    if (!compiled) {
      // Deregistered: its sidecars keep the last snapshot while they drain.
      this.queue.cancel(service);
      this.reported.delete(service);
      return;
    }
    // The hash was just computed from this content (hashSnapshot's definition, property-tested):
    // the check covers everything else without serializing the snapshot again.
    const issues = checkSnapshot(compiled.content);
    this.report(service, compiled, issues);
    // Compared with what the stream will hold once the publication in progress (if any) is stored:
    // an input that changed and changed back meanwhile must publish the older content again.
    const upcoming = this.queue.runningValue(service)?.hash ?? this.published.lastHash(service);
    if (issues.length || upcoming === compiled.hash) {
      this.queue.cancel(service);
      return;
    }
    this.queue.submit(service, compiled, urgent);
  }

  /** Logs the summary of `round` once all it compiled is published, unless more work joined it meanwhile. */
  private endRound(round: Round): void {
    if (this.round !== round || this.compileScheduled || this.queue.queued || this.queue.inFlight) return;
    this.round = undefined;
    this.log.info(
      {
        snapshots: round.compiled,
        published: round.published,
        failed: round.failed,
        compileMs: Math.round(round.compileMs * 10) / 10,
        ms: Math.round((performance.now() - round.startedAt) * 10) / 10,
      },
      'snapshots rebuilt',
    );
  }

  private report(service: string, compiled: CompiledSnapshot, issues: { path: string; message: string }[]): void {
    const { missing, warnings } = compiled.diagnostics;
    const key = JSON.stringify([missing, warnings, issues]);
    if (this.reported.get(service) === key) return;
    this.reported.set(service, key);
    if (issues.length)
      this.log.error({ meshService: service, issues }, 'inconsistent snapshot not published; sidecars keep the previous one');
    if (warnings.length) this.log.warn({ meshService: service, warnings }, 'inconsistent inputs; snapshot built anyway');
    if (missing.length) this.log.info({ meshService: service, missing }, 'declared upstreams not registered yet');
  }
}
