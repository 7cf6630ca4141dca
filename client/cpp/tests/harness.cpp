#include "harness.h"

#include <exception>
#include <random>
#include <stdexcept>
#include <iostream>

namespace harness {
namespace {
int g_failures = 0;
}

std::vector<Case>& registry() {
    static std::vector<Case> cases;
    return cases;
}

void fail(const char* file, int line, const std::string& message) {
    ++g_failures;
    std::cerr << file << ":" << line << ": FAILED " << message << "\n";
}

std::string hex(const std::vector<std::uint8_t>& data) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (const auto b : data) {
        out.push_back(kDigits[b >> 4]);
        out.push_back(kDigits[b & 0x0F]);
    }
    return out;
}

std::vector<std::uint8_t> unhex(const std::string& text) {
    std::vector<std::uint8_t> out;
    int high = -1;
    for (const char c : text) {
        int v = -1;
        if (c >= '0' && c <= '9') v = c - '0';
        else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
        else continue;
        if (high < 0) {
            high = v;
        } else {
            out.push_back(static_cast<std::uint8_t>(high * 16 + v));
            high = -1;
        }
    }
    return out;
}

std::vector<std::uint8_t> bytes(const std::string& text) { return std::vector<std::uint8_t>(text.begin(), text.end()); }

TempDir::TempDir() {
    std::random_device random;
    for (int attempt = 0; attempt < 16; ++attempt) {
        path = std::filesystem::temp_directory_path() / ("eft-cpp-test-" + std::to_string(random()));
        if (std::filesystem::create_directory(path)) return;
    }
    throw std::runtime_error("cannot create a temporary directory");
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
}

}  // namespace harness

int main(int argc, char** argv) {
    const std::string group = argc > 1 ? argv[1] : "";
    int ran = 0;
    for (const auto& c : harness::registry()) {
        if (!group.empty() && c.group != group) continue;
        ++ran;
        const int before = harness::g_failures;
        try {
            c.body();
        } catch (const std::exception& e) {
            harness::fail(__FILE__, __LINE__, c.name + ": unexpected exception: " + e.what());
        }
        std::cout << (harness::g_failures == before ? "ok   " : "FAIL ") << c.group << "/" << c.name << "\n";
    }
    if (ran == 0) {
        std::cerr << "no test in group '" << group << "'\n";
        return 1;
    }
    std::cout << (ran - 0) << " test case(s), " << harness::g_failures << " failed check(s)\n";
    return harness::g_failures == 0 ? 0 : 1;
}
