/**
 * Which snapshots a change to one service touches. A service either declared the services it
 * calls (its snapshot then depends on those only) or did not (it calls every service, itself
 * included). Not safe for concurrent writers; the owner (one MeshView) serializes updates.
 */
export class DependencyIndex {
  /** Registered services → their declared upstreams, or undefined (every service). */
  private readonly declarations = new Map<string, ReadonlySet<string> | undefined>();
  /** Upstream → services that declared it. */
  private readonly dependents = new Map<string, Set<string>>();
  /** Registered services without a declaration. */
  private readonly implicit = new Set<string>();

  /** Records (or replaces) the declaration of a registered service; `undefined` means "calls everything". */
  set(service: string, upstreams: readonly string[] | undefined): void {
    this.remove(service);
    const declared = upstreams ? new Set(upstreams) : undefined;
    this.declarations.set(service, declared);
    if (!declared) {
      this.implicit.add(service);
      return;
    }
    for (const u of declared) {
      let set = this.dependents.get(u);
      if (!set) {
        set = new Set();
        this.dependents.set(u, set);
      }
      set.add(service);
    }
  }

  /** Forgets a service that is no longer registered. */
  remove(service: string): void {
    const declared = this.declarations.get(service);
    this.declarations.delete(service);
    this.implicit.delete(service);
    for (const u of declared ?? []) {
      const set = this.dependents.get(u);
      set?.delete(service);
      if (set?.size === 0) this.dependents.delete(u);
    }
  }

  has(service: string): boolean {
    return this.declarations.has(service);
  }

  /** Registered services, sorted. */
  services(): string[] {
    return [...this.declarations.keys()].sort();
  }

  /**
   * Registered services whose snapshot depends on `service`'s endpoints or policy: the service
   * itself (its inbound side and, when it calls itself, its upstream), those that declared it, and
   * those that call everything. Whether `service` is registered does not matter for the others:
   * its registration, change or removal shows in their upstreams.
   */
  affectedBy(service: string): Set<string> {
    const out = new Set<string>(this.implicit);
    if (this.has(service)) out.add(service);
    for (const d of this.dependents.get(service) ?? []) out.add(d);
    return out;
  }
}
