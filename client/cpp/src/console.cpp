#include "console.h"

#include <iostream>

namespace eft {

void ConsoleReporter::info(const std::string& line) { std::cout << line << std::endl; }

void ConsoleReporter::warn(const std::string& line) {
    std::cerr << "eft-client-cpp: warning: " << line << std::endl;
}

void ConsoleReporter::server_error() { std::cerr << "server responded with an error" << std::endl; }

void ConsoleReporter::error(const std::string& line) {
    std::cerr << "eft-client-cpp: error: " << line << std::endl;
}

}  // namespace eft
