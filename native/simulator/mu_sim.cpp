// mu-sim: runs the engine simulator over a range of seeds and reports the first failing
// seed with how to replay it.
//
//   mu-sim --seeds 1..1000            every seed in the range (inclusive)
//   mu-sim --seed 42 --trace          one seed, printing its events
//   mu-sim --long-run 600             random seeds for 600 seconds
//   --fault-steps N --replicas N      change the run's shape
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "simulator/simulation.hpp"

namespace {

using mu::engine::simulator::run_simulation;
using mu::engine::simulator::SimulationOptions;
using mu::engine::simulator::SimulationResult;

[[noreturn]] void usage(const char* problem) {
  std::fprintf(stderr,
               "mu-sim: %s\nusage: mu-sim (--seeds A..B | --seed N | --long-run SECONDS) [--trace] "
               "[--fault-steps N] [--replicas N]\n",
               problem);
  std::exit(2);
}

std::uint64_t number(const char* text, const char* what) {
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0') usage(what);
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  SimulationOptions options;
  std::uint64_t first = 1;
  std::uint64_t last = 100;
  std::uint64_t long_run_s = 0;
  bool trace = false;
  for (int i = 1; i < argc; ++i) {
    const std::string argument = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (argument == "--seeds" && value) {
      const std::string range = value;
      const auto dots = range.find("..");
      if (dots == std::string::npos) usage("--seeds takes A..B");
      first = number(range.substr(0, dots).c_str(), "bad --seeds start");
      last = number(range.substr(dots + 2).c_str(), "bad --seeds end");
      ++i;
    } else if (argument == "--seed" && value) {
      first = last = number(value, "bad --seed");
      ++i;
    } else if (argument == "--long-run" && value) {
      long_run_s = number(value, "bad --long-run");
      ++i;
    } else if (argument == "--fault-steps" && value) {
      options.fault_steps = number(value, "bad --fault-steps");
      ++i;
    } else if (argument == "--replicas" && value) {
      options.replica_count = static_cast<std::uint32_t>(number(value, "bad --replicas"));
      ++i;
    } else if (argument == "--trace") {
      trace = true;
    } else {
      usage(("unknown argument " + argument).c_str());
    }
  }
  if (first > last) usage("empty seed range");

  const auto started = std::chrono::steady_clock::now();
  const auto deadline = started + std::chrono::seconds(long_run_s);
  std::uint64_t runs = 0, proposed = 0, acknowledged = 0, leader_changes = 0, pauses = 0, crashes = 0, lagging = 0, link_resets = 0;
  for (std::uint64_t seed = long_run_s ? static_cast<std::uint64_t>(started.time_since_epoch().count()) : first;;
       ++seed) {
    if (!long_run_s && seed > last) break;
    if (long_run_s && std::chrono::steady_clock::now() > deadline) break;
    const SimulationResult result = run_simulation(
        seed, options, trace ? [](const std::string& line) { std::printf("  %s\n", line.c_str()); }
                             : std::function<void(const std::string&)>{});
    ++runs;
    proposed += result.commands_proposed;
    acknowledged += result.commands_acknowledged;
    leader_changes += result.leader_changes;
    pauses += result.pauses;
    crashes += result.crashes;
    link_resets += result.link_resets;
    lagging += result.replicas_needing_state_transfer;
    if (!result.ok) {
      std::printf("mu-sim: seed %llu FAILED: %s\n  replay: mu-sim --seed %llu --trace --replicas %u --fault-steps %llu\n",
                  static_cast<unsigned long long>(seed), result.violation.c_str(),
                  static_cast<unsigned long long>(seed), options.replica_count,
                  static_cast<unsigned long long>(options.fault_steps));
      return 1;
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("mu-sim: %llu seeds passed in %.1f s (%u replicas, %llu fault steps each): %llu commands proposed, "
              "%llu acknowledged, %llu leader changes, %llu pauses, %llu crashes, %llu paired link resets, %llu replicas "
              "left needing a state transfer\n",
              static_cast<unsigned long long>(runs), seconds, options.replica_count,
              static_cast<unsigned long long>(options.fault_steps), static_cast<unsigned long long>(proposed),
              static_cast<unsigned long long>(acknowledged), static_cast<unsigned long long>(leader_changes),
              static_cast<unsigned long long>(pauses), static_cast<unsigned long long>(crashes),
              static_cast<unsigned long long>(link_resets),
              static_cast<unsigned long long>(lagging));
  return runs > 0 ? 0 : 2;
}
