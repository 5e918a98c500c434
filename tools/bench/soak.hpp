// signal-bench soak: a long steady load with churn, sampling the server for drift (soak.cpp).
#pragma once

namespace bench {

// Parses its own options (argv[1] is "soak"), runs, prints one JSON line; returns the exit code.
int run_soak(int argc, char** argv);

}  // namespace bench
