// A replica as one member of a configured cluster: its engine (Replica) and its control
// plane, wired together. Start-up: create the engine, publish its card through the
// control plane, wait for the peers' cards (every one for a moment, then a majority is
// enough: a cluster must come back after a restart while one of its hosts is still down),
// connect, start. Afterwards a peer that restarts, or that was missing at start-up,
// announces its card; the member connects the engine to it, and the peer joins through
// the leader. Each member tells the others which incarnation of theirs its engine is
// connected to (the cards' links), and connects to a peer only while that peer's ends are
// not connected to an earlier incarnation of it (mayConnectTo): a restarted replica waits
// until the others have reconnected to it.
//
// Links out of step: after a partition, a pause or an error on one side, an RC queue pair
// whose peer kept its own end may never come back on its own (the two ends' packet
// sequence numbers no longer agree). A live peer (its control plane answers) not reached
// over the fabric for engine.linkResetMs gets a paired reset of the link
// (link_resets.ts). The last resort, on verbs: a replica that sees no majority over RDMA
// for engine.wedgedLinkRestartMs while its control plane reaches a majority restarts; only
// a replica outside the majority ever does, so the majority goes on, and the restarted one
// rejoins as a new incarnation with fresh queue pairs. The supervisor (the container's
// restart policy, systemd) starts it again.
import crypto from 'node:crypto';

import type { ClusterConfig } from './config.js';
import { nativeReplicaOptions } from './config.js';
import { ControlPlane } from './control/control_plane.js';
import type { PeerCard } from './control/card_book.js';
import { LinkResets, parseLinkEntry } from './link_resets.js';
import { Replica, type ReplicaTuning } from './replica.js';

export interface MemberOptions {
  log?: (line: string) => void;
  // How long to wait at start-up for the cards of a majority (this replica's included).
  cardsTimeoutMs?: number;
  // How long to wait at start-up for every card before starting with a majority.
  allCardsGraceMs?: number;
  tuning?: ReplicaTuning;
  // Called when the links are wedged (see above); the default logs and exits with status
  // 75 (EX_TEMPFAIL) for the supervisor to restart this replica.
  onWedged?: (reason: string) => void;
}

// How long after a failed connection to a peer its card is tried again.
const retryConnectMs = 1000;

// How often the wedge watchdog looks.
const wedgeCheckIntervalMs = 1000;
// How often the links to live peers are looked at (engine.linkResetMs).
const linkCheckIntervalMs = 250;

export class ClusterMember {
  readonly replica: Replica;
  readonly control: ControlPlane;
  readonly incarnation: string;
  private readonly links: LinkResets;
  private readonly log: (line: string) => void;
  private wedgeWatch: NodeJS.Timeout | undefined;
  private linkWatch: NodeJS.Timeout | undefined;
  private readonly retries = new Set<NodeJS.Timeout>();

  private constructor(replica: Replica, control: ControlPlane, incarnation: string, private readonly replicaCount: number, linkResetMs: number, log: (line: string) => void) {
    this.replica = replica;
    this.control = control;
    this.incarnation = incarnation;
    this.log = log;
    this.links = new LinkResets(incarnation, linkResetMs, {
      reset: (peer, hold) => {
        const card = control.knownCards().get(peer);
        if (card === undefined) throw new Error(`mu member: no card of replica ${peer} to reset the link with`);
        return replica.reconnectPeer(card.card, hold);
      },
      release: (peer) => replica.releaseLink(peer),
      log,
    });
  }

  static async start(config: ClusterConfig, nodeId: number, options: MemberOptions = {}): Promise<ClusterMember> {
    const log = options.log ?? ((line: string) => console.error(`mu replica ${nodeId}: ${line}`));
    if (!config.replicas.some((replica) => replica.id === nodeId)) {
      throw new Error(`replica id ${nodeId} is not in the cluster configuration (ids 0..${config.replicas.length - 1})`);
    }
    const replica = new Replica(nativeReplicaOptions(config, nodeId), { unknownOutcomeMs: config.engine.unknownOutcomeMs, ...options.tuning });
    const incarnation = crypto.randomBytes(8).toString('hex');
    const control = new ControlPlane({
      selfId: nodeId,
      peers: config.replicas,
      clusterName: config.cluster,
      secret: config.secret,
      card: replica.card(),
      incarnation,
      log: (line) => log(`control: ${line}`),
    });
    const member = new ClusterMember(replica, control, incarnation, config.replicas.length, config.engine.linkResetMs, log);
    try {
      await control.start();
      const cards = await startingCards(control, nodeId, incarnation, config.replicas.length, options.allCardsGraceMs ?? 2000, options.cardsTimeoutMs ?? 30_000);
      replica.connect(cards.map((card) => card?.card ?? null));
      for (const card of cards) if (card !== undefined && card.id !== nodeId) member.links.connectedAtStart(card.id, card.incarnation);
      member.announceLinks();
      const absent = cards.flatMap((card, id) => (card === undefined ? [id] : []));
      control.on('card', (card) => member.onPeerCard(card));
      replica.on('peer-reconnected', (peer, ok, change) => {
        const outcome = member.links.applied(peer, change, ok);
        if (ok) log(`connected to replica ${peer} (change ${change})`);
        else log(`could not connect to replica ${peer} (change ${change})${outcome === 'retry' ? `; trying its card again in ${retryConnectMs} ms` : ''}`);
        if (outcome !== 'nothing') member.announceLinks();
        if (outcome === 'retry') member.retryConnect(peer);
      });
      // A card that arrived, or changed its links, between start-up's decision and the
      // listener above.
      for (const card of control.knownCards().values()) member.onPeerCard(card);
      replica.on('role', (change) =>
        log(`role ${change.role} (candidacy ${change.candidacy}, log granted to ${change.leaderId ?? 'nobody'})`),
      );
      replica.start();
      log(`started (incarnation ${incarnation}, ${config.replicas.length} replicas, fabric ${config.fabric.backend})`);
      if (absent.length > 0) {
        log(`started without replica(s) ${absent.join(', ')}: not heard from yet, or still connected to an earlier incarnation of this replica; each joins once it has connected to this one`);
      }
      member.watchLinks();
      if (config.fabric.backend === 'verbs' && config.engine.wedgedLinkRestartMs > 0) {
        const onWedged =
          options.onWedged ??
          ((reason: string) => {
            log(`${reason}: exiting so that the supervisor restarts this replica with fresh connections`);
            process.exit(75);
          });
        member.watchForWedgedLinks(config.replicas.length, config.engine.wedgedLinkRestartMs, onWedged);
      }
      return member;
    } catch (error) {
      replica.stop();
      await control.close();
      throw error;
    }
  }

  // Starts paired resets of links to live peers that stay out of reach (link_resets.ts).
  private watchLinks(): void {
    this.linkWatch = setInterval(() => {
      const alive = this.replica.status().peerAlive;
      const reachable = this.control.reachablePeers();
      for (let peer = 0; peer < this.replicaCount; peer += 1) {
        if (peer !== this.replica.nodeId) this.links.check(peer, alive[peer] ?? false, reachable.has(peer));
      }
    }, linkCheckIntervalMs);
    this.linkWatch.unref();
  }

  private watchForWedgedLinks(replicaCount: number, limitMs: number, onWedged: (reason: string) => void): void {
    const majority = Math.floor(replicaCount / 2) + 1;
    let since: number | undefined;
    this.wedgeWatch = setInterval(() => {
      const status = this.replica.status();
      const seenOverRdma = status.peerAlive.filter((alive, id) => alive || id === this.replica.nodeId).length;
      const reachedOverTcp = this.control.reachablePeers().size + 1;
      if (seenOverRdma >= majority || reachedOverTcp < majority) {
        since = undefined;
        return;
      }
      since ??= Date.now();
      if (Date.now() - since < limitMs) return;
      clearInterval(this.wedgeWatch);
      onWedged(`for ${limitMs} ms this replica saw ${seenOverRdma} of ${replicaCount} replicas over RDMA (itself included) while its control plane reached ${reachedOverTcp}: its RDMA links are wedged`);
    }, wedgeCheckIntervalMs);
    this.wedgeWatch.unref();
  }

  // A connection to `peer` failed (its host still booting, say): try its newest card again
  // a little later, unless a newer card has connected meanwhile.
  private retryConnect(peer: number): void {
    const timer = setTimeout(() => {
      this.retries.delete(timer);
      const card = this.control.knownCards().get(peer);
      if (card !== undefined) this.onPeerCard(card);
    }, retryConnectMs);
    timer.unref();
    this.retries.add(timer);
  }

  // Tells the peers which of their incarnations this replica's ends are connected to, once
  // the engine has connected them (mayConnectTo).
  private announceLinks(): void {
    const links = Array.from({ length: this.replicaCount }, (_, id) => (id === this.replica.nodeId ? '' : this.links.entryFor(id)));
    this.control.setLinks(links);
  }

  private onPeerCard(card: PeerCard): void {
    if (card.id === this.replica.nodeId) return;
    const entry = card.links[this.replica.nodeId] ?? '';
    if (this.links.connectedTo(card.id, card.incarnation)) {
      this.links.onPeerEntry(card.id, card.incarnation, entry);
      return;
    }
    if (!mayConnectTo(card, this.replica.nodeId, this.incarnation)) return; // its ends still point at our previous incarnation
    this.log(`replica ${card.id} (incarnation ${card.incarnation}) may be connected to: connecting`);
    try {
      this.links.connect(card.id, card.incarnation, entry);
    } catch (error) {
      this.log(`replica ${card.id}'s card was refused: ${(error as Error).message}`);
    }
  }

  // Per peer (null for this replica): the link as this replica's card states it, whether a
  // paired reset holds it, the resets each side started, and whether the peer's control
  // plane answers.
  linkReport(): Array<{ link: string; held: boolean; resetsStarted: number; resetsAnswered: number; controlReachable: boolean } | null> {
    const reachable = this.control.reachablePeers();
    return Array.from({ length: this.replicaCount }, (_, peer) =>
      peer === this.replica.nodeId ? null : { ...this.links.report(peer), controlReachable: reachable.has(peer) },
    );
  }

  async stop(): Promise<void> {
    clearInterval(this.wedgeWatch);
    clearInterval(this.linkWatch);
    for (const timer of this.retries) clearTimeout(timer);
    this.retries.clear();
    this.replica.stop();
    await this.control.close();
  }
}

// Whether this replica may connect its ends toward `card`'s replica now. On RDMA, an end
// that posts toward a queue pair still connected to an earlier incarnation of this replica
// is judged by that incarnation's packet sequence numbers: its writes may be acknowledged
// and never executed, or refused until the queue pair fails (scripts/rdma-vm/README.md).
// So a restarted replica waits until the peer has connected its ends to this incarnation
// (the peer does when it learns this card) or has none connected ('').
export function mayConnectTo(card: PeerCard, selfId: number, selfIncarnation: string): boolean {
  if (card.id === selfId) return true;
  const linked = parseLinkEntry(card.links[selfId] ?? '');
  return linked === undefined || linked.incarnation === selfIncarnation;
}

// The replicas' cards to start with, by id: every one if they all come, and may be
// connected to (mayConnectTo), within `graceMs`; else, once a majority of them (this
// replica's included) may within `timeoutMs`, those (undefined for the others, which join
// later). Rejects naming the missing replicas when not even a majority comes.
export async function startingCards(control: ControlPlane, selfId: number, incarnation: string, replicaCount: number, graceMs: number, timeoutMs: number): Promise<Array<PeerCard | undefined>> {
  if (!Number.isFinite(graceMs) || graceMs < 0 || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
    throw new RangeError(`mu member: the start-up waits must be non-negative numbers of ms (grace ${graceMs}, timeout ${timeoutMs})`);
  }
  if (control.closed) throw new Error('mu member: the control plane closed before start-up');
  const majority = Math.floor(replicaCount / 2) + 1;
  const started = Date.now();
  const usable = (): Map<number, PeerCard> => {
    const cards = new Map<number, PeerCard>();
    for (const [id, card] of control.knownCards()) if (mayConnectTo(card, selfId, incarnation)) cards.set(id, card);
    return cards;
  };
  const known = await new Promise<Map<number, PeerCard>>((resolve, reject) => {
    const check = (): void => {
      const cards = usable();
      const waited = Date.now() - started;
      if (cards.size === replicaCount || (cards.size >= majority && waited >= Math.min(graceMs, timeoutMs))) {
        finish();
        resolve(cards);
      }
    };
    const graceTimer = setTimeout(check, Math.min(graceMs, timeoutMs));
    const timer = setTimeout(() => {
      finish();
      const cards = control.knownCards();
      const lacking = Array.from({ length: replicaCount }, (_, id) => id).filter((id) => !usable().has(id));
      const why = lacking.map((id) => (cards.has(id) ? `${id} (still connected to an earlier incarnation of this replica)` : `${id} (no card)`));
      reject(new Error(`mu control: waited ${timeoutMs} ms for the cards of a majority and still lacks those of replicas ${why.join(', ')}`));
    }, timeoutMs);
    const onCard = (): void => check();
    const onClosed = setInterval(() => {
      if (!control.closed) return;
      finish();
      reject(new Error('mu member: the control plane closed during start-up'));
    }, 100);
    const finish = (): void => {
      clearTimeout(graceTimer);
      clearTimeout(timer);
      clearInterval(onClosed);
      control.removeListener('card', onCard);
    };
    control.on('card', onCard);
    check();
  });
  return Array.from({ length: replicaCount }, (_, id) => known.get(id));
}
