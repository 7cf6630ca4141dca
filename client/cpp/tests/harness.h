// A tiny test harness: TEST_CASE(group, name) registers a function; CHECK/CHECK_EQ record
// failures and go on; CHECK_THROWS expects an exception type. `eft-unit-tests GROUP`
// runs one group (one ctest test per group).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace harness {

struct Case {
    std::string group;
    std::string name;
    std::function<void()> body;
};

std::vector<Case>& registry();
void fail(const char* file, int line, const std::string& message);

struct Registrar {
    Registrar(const char* group, const char* name, std::function<void()> body) {
        registry().push_back(Case{group, name, std::move(body)});
    }
};

std::string hex(const std::vector<std::uint8_t>& bytes);
std::vector<std::uint8_t> unhex(const std::string& text);  // ignores spaces
std::vector<std::uint8_t> bytes(const std::string& text);

// A fresh directory under the system's temporary directory, removed with its content.
struct TempDir {
    std::filesystem::path path;
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

}  // namespace harness

#define HARNESS_CAT2(a, b) a##b
#define HARNESS_CAT(a, b) HARNESS_CAT2(a, b)
#define TEST_CASE(group, name)                                                                   \
    static void HARNESS_CAT(test_fn_, __LINE__)();                                               \
    static const harness::Registrar HARNESS_CAT(test_reg_, __LINE__)(group, name,                \
                                                                     HARNESS_CAT(test_fn_, __LINE__)); \
    static void HARNESS_CAT(test_fn_, __LINE__)()

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) harness::fail(__FILE__, __LINE__, "CHECK(" #cond ")"); \
    } while (0)

#define CHECK_EQ(a, b)                                                                   \
    do {                                                                                 \
        const auto& check_a_ = (a);                                                      \
        const auto& check_b_ = (b);                                                      \
        if (!(check_a_ == check_b_)) {                                                   \
            std::ostringstream check_os_;                                                \
            check_os_ << "CHECK_EQ(" #a ", " #b "): " << check_a_ << " != " << check_b_; \
            harness::fail(__FILE__, __LINE__, check_os_.str());                          \
        }                                                                                \
    } while (0)

#define CHECK_THROWS(type, expr)                                                              \
    do {                                                                                      \
        bool check_thrown_ = false;                                                           \
        try {                                                                                 \
            (void)(expr);                                                                     \
        } catch (const type&) {                                                               \
            check_thrown_ = true;                                                             \
        } catch (...) {                                                                       \
            harness::fail(__FILE__, __LINE__, "CHECK_THROWS(" #type ", " #expr "): other exception"); \
            check_thrown_ = true;                                                             \
        }                                                                                     \
        if (!check_thrown_) harness::fail(__FILE__, __LINE__, "CHECK_THROWS(" #type ", " #expr "): no exception"); \
    } while (0)
