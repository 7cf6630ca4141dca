// The client as a whole: options and config files -> connection -> key exchange -> files.
#pragma once

#include <string>
#include <vector>

#include "errors.h"

namespace eft {

// Runs the client; returns the process exit code. Never throws.
int run_client(const std::vector<std::string>& args);

}  // namespace eft
