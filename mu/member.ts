// A replica as one member of a configured cluster: its engine (Replica) and its control
// plane, wired together. Start-up: create the engine, publish its card through the
// control plane, wait for every peer's card, connect, start. Afterwards a peer that
// restarts announces a new incarnation and card; the member reconnects the engine to it,
// and the peer rejoins through the leader.
//
// Wedged links (verbs only): after a long enough partition, an RC queue pair whose peer
// kept its own end never comes back (the two ends' packet sequence numbers no longer
// agree, and only a paired reset, or a new incarnation, realigns them). So a replica
// that sees no majority over RDMA for engine.wedgedLinkRestartMs while its control plane
// (TCP) reaches a majority restarts: only a replica outside the majority ever does, so
// the majority goes on, and the restarted one rejoins as a new incarnation with fresh
// queue pairs. The supervisor (the container's restart policy, systemd) starts it again.
import crypto from 'node:crypto';

import type { ClusterConfig } from './config.js';
import { nativeReplicaOptions } from './config.js';
import { ControlPlane } from './control/control_plane.js';
import type { PeerCard } from './control/card_book.js';
import { Replica, type ReplicaTuning } from './replica.js';

export interface MemberOptions {
  log?: (line: string) => void;
  // How long to wait for every peer's card at start-up.
  cardsTimeoutMs?: number;
  tuning?: ReplicaTuning;
  // Called when the links are wedged (see above); the default logs and exits with status
  // 75 (EX_TEMPFAIL) for the supervisor to restart this replica.
  onWedged?: (reason: string) => void;
}

// How often the wedge watchdog looks.
const wedgeCheckIntervalMs = 1000;

export class ClusterMember {
  readonly replica: Replica;
  readonly control: ControlPlane;
  readonly incarnation: string;
  private readonly connectedIncarnations = new Map<number, string>();
  private readonly log: (line: string) => void;
  private wedgeWatch: NodeJS.Timeout | undefined;

  private constructor(replica: Replica, control: ControlPlane, incarnation: string, log: (line: string) => void) {
    this.replica = replica;
    this.control = control;
    this.incarnation = incarnation;
    this.log = log;
  }

  static async start(config: ClusterConfig, nodeId: number, options: MemberOptions = {}): Promise<ClusterMember> {
    const log = options.log ?? ((line: string) => console.error(`mu replica ${nodeId}: ${line}`));
    if (!config.replicas.some((replica) => replica.id === nodeId)) {
      throw new Error(`replica id ${nodeId} is not in the cluster configuration (ids 0..${config.replicas.length - 1})`);
    }
    const replica = new Replica(nativeReplicaOptions(config, nodeId), options.tuning);
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
    const member = new ClusterMember(replica, control, incarnation, log);
    try {
      await control.start();
      const cards = await control.waitForCards(options.cardsTimeoutMs ?? 30_000);
      for (const card of cards) member.connectedIncarnations.set(card.id, card.incarnation);
      replica.connect(cards.map((card) => card.card));
      control.on('card', (card) => member.onPeerCard(card));
      replica.on('peer-reconnected', (peer, ok) =>
        log(ok ? `reconnected to replica ${peer}` : `could not reconnect to replica ${peer} (a newer card should follow)`),
      );
      replica.on('role', (change) =>
        log(`role ${change.role} (candidacy ${change.candidacy}, log granted to ${change.leaderId ?? 'nobody'})`),
      );
      replica.start();
      log(`started (incarnation ${incarnation}, ${config.replicas.length} replicas, fabric ${config.fabric.backend})`);
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

  private onPeerCard(card: PeerCard): void {
    if (card.id === this.replica.nodeId) return;
    if (this.connectedIncarnations.get(card.id) === card.incarnation) return;
    this.log(`replica ${card.id} restarted (incarnation ${card.incarnation}): reconnecting`);
    this.connectedIncarnations.set(card.id, card.incarnation);
    try {
      this.replica.reconnectPeer(card.card);
    } catch (error) {
      this.log(`replica ${card.id}'s new card was refused: ${(error as Error).message}`);
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.wedgeWatch);
    this.replica.stop();
    await this.control.close();
  }
}
