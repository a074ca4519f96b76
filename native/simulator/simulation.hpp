// One seeded run of the whole engine under faults, with the protocol's invariants checked
// after every step (the VOPR model: TigerBeetle's simulator).
//
// A run has two phases. In the fault phase a seeded scheduler picks, step by step, which
// agent of which replica works, when the network delivers, how far the clock moves, and
// when replicas pause, resume or crash (never more than a minority at once), while clients
// propose commands to whichever replica leads. The sim fabric meanwhile delays writes,
// reorders across connections and tears writes. In the liveness phase the faults stop,
// paused replicas resume, and a leader must commit a new command on every live replica
// within a bounded number of steps.
//
// Checked after every step:
//   agreement      no two replicas apply different commands at the same position
//   order          each proposer's commands are applied in the order it proposed them
//   one writer     every log grants write access to at most one replica, and only once
//                  every other replica's access to it is settled revoked
//   one leader     at most one replica holds write access to a majority of the logs
// Checked at the end:
//   durability     every command acknowledged (applied at its proposer) is applied on
//                  every live replica
//   liveness       the probe commits within the bound
// Paired resets of live links (the control plane's remedy for a link out of step) run
// through the same steps: each end's reset, hold and release at its own random moment.
// Besides faults at random moments, a leader is paused or crashed now and then right
// after its commit point moves, while entries behind it are still in flight: the moment
// where a wrong prepare (say, adopting the lowest proposal) would lose a chosen value.
// The same seed replays the same run exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "fabric/sim/sim_network.hpp"

namespace mu::engine::simulator {

struct SimulationOptions {
  std::uint32_t replica_count = 3;
  std::uint64_t fault_steps = 20'000;
  std::uint64_t liveness_steps = 400'000;
  // Per step, in the fault phase.
  double pause_probability = 2e-4;
  double resume_probability = 2e-3;
  double crash_probability = 2e-5;
  // Faults aimed at the protocol's most delicate moment: right after a leader applied (and
  // so answered) a command that its followers may not yet know to be committed, that
  // leader is paused or crashed with this probability.
  double fault_at_commit_probability = 0.02;
  double propose_probability = 0.05;
  // A paired reset of the link between two live replicas starts (mu/link_resets.ts: the
  // first resets its ends and holds them; later the other resets its own, or both started
  // at once and each answers the other; then the holders release), at random moments.
  double link_reset_probability = 2e-4;
  fabric::sim::SimFaults network{1, 8, 0.2, 4};
  // Small logs, so that runs wrap and recycle.
  std::uint64_t log_area_bytes = 16 * 1024;
  std::uint32_t max_payload_bytes = 1024;
};

struct SimulationResult {
  bool ok = true;
  std::string violation;  // what broke, at which step
  std::uint64_t steps = 0;
  std::uint64_t commands_proposed = 0;
  std::uint64_t commands_acknowledged = 0;
  std::uint64_t commands_applied = 0;  // length of the agreed history
  std::uint32_t leader_changes = 0;
  std::uint32_t pauses = 0;
  std::uint32_t crashes = 0;
  std::uint32_t replicas_needing_state_transfer = 0;  // at the end
  std::uint32_t state_transfers = 0;
  std::uint32_t link_resets = 0;
};

// `trace`, when set, receives one line per notable event (faults, leader changes).
SimulationResult run_simulation(std::uint64_t seed, const SimulationOptions& options,
                                const std::function<void(const std::string&)>& trace = {});

}  // namespace mu::engine::simulator
