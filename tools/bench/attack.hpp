// signal-bench attack: admission while half-open requests and clients that never read hold
// connections on the server (see attack.cpp).
#pragma once

namespace bench {

// The mode's lines of the usage text.
extern const char* const kAttackUsage;

// Parses the attack mode's own options (argv[1] is "attack") and runs it; returns the exit code.
int run_attack(int argc, char** argv);

}  // namespace bench
