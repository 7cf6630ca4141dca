#include "platform/files.h"

#include <cstdlib>
#include <cstring>
#include <random>
#include <system_error>
#include <utility>
#include <vector>

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#include <sddl.h>
#else
#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace eft::platform {
namespace {

constexpr int kNameAttempts = 16;

// The temporary name: hidden, in the same directory (so the rename stays on one file
// system), with 64 random bits so that nobody can plant something there in advance;
// O_EXCL / CREATE_NEW makes a collision an error rather than a write through it.
std::filesystem::path temporary_name(const std::filesystem::path& path) {
    std::random_device random;
    const std::uint64_t bits = (static_cast<std::uint64_t>(random()) << 32) ^ random();
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string suffix;
    for (int shift = 60; shift >= 0; shift -= 4) suffix.push_back(kDigits[(bits >> shift) & 0xFu]);
    // u8path: on Windows a plain std::string would be read in the ANSI code page.
    return path.parent_path() / std::filesystem::u8path("." + path.filename().u8string() + "." + suffix + ".tmp");
}

std::string shown(const std::filesystem::path& path) { return path.u8string(); }

#ifdef _WIN32
std::string last_error_text() { return std::system_category().message(static_cast<int>(::GetLastError())); }
#else
std::string errno_text(int code) { return std::generic_category().message(code); }
#endif

}  // namespace

#ifdef _WIN32

namespace {

// The security identifier of the user running the client, as text ("S-1-5-21-...").
std::wstring current_user_sid() {
    HANDLE token = nullptr;
    if (!::OpenProcessToken(::GetCurrentProcess(), TOKEN_QUERY, &token)) {
        throw FileError("cannot open the process token: " + last_error_text());
    }
    DWORD size = 0;
    (void)::GetTokenInformation(token, TokenUser, nullptr, 0, &size);  // asks for the size
    std::vector<std::uint8_t> buffer(size);
    const bool ok = size != 0 && ::GetTokenInformation(token, TokenUser, buffer.data(), size, &size) != 0;
    const std::string reason = ok ? std::string() : last_error_text();
    ::CloseHandle(token);
    if (!ok) throw FileError("cannot find the current user: " + reason);
    LPWSTR text = nullptr;
    if (!::ConvertSidToStringSidW(reinterpret_cast<const TOKEN_USER*>(buffer.data())->User.Sid, &text)) {
        throw FileError("cannot find the current user: " + last_error_text());
    }
    std::wstring sid(text);
    ::LocalFree(text);
    return sid;
}

}  // namespace

void write_private_file(const std::filesystem::path& path, const std::uint8_t* data, std::size_t size) {
    // A protected DACL with one entry: full access for the user running the client,
    // nothing inherited from the directory: the Windows counterpart of mode 0600. The
    // user's own SID, not "OW" (owner rights): an elevated administrator's files may be
    // owned by the Administrators group, and Wine maps "OW" to no Unix permission at all.
    const std::wstring sddl = L"D:P(A;;FA;;;" + current_user_sid() + L")";
    PSECURITY_DESCRIPTOR descriptor = nullptr;
    if (!::ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl.c_str(), SDDL_REVISION_1, &descriptor,
                                                                 nullptr)) {
        throw FileError("cannot build a private security descriptor: " + last_error_text());
    }
    SECURITY_ATTRIBUTES attributes{};
    attributes.nLength = sizeof attributes;
    attributes.lpSecurityDescriptor = descriptor;
    attributes.bInheritHandle = FALSE;
    std::filesystem::path tmp;
    HANDLE file = INVALID_HANDLE_VALUE;
    for (int attempt = 0; attempt < kNameAttempts && file == INVALID_HANDLE_VALUE; ++attempt) {
        tmp = temporary_name(path);
        // CREATE_NEW fails on anything already there, a symlink included.
        file = ::CreateFileW(tmp.c_str(), GENERIC_WRITE, 0, &attributes, CREATE_NEW, FILE_ATTRIBUTE_NORMAL,
                             nullptr);
        if (file == INVALID_HANDLE_VALUE && ::GetLastError() != ERROR_FILE_EXISTS) break;
    }
    ::LocalFree(descriptor);
    if (file == INVALID_HANDLE_VALUE) throw FileError("cannot create " + shown(tmp) + ": " + last_error_text());
    bool ok = true;
    while (ok && size > 0) {
        const DWORD chunk = size > 0x40000000u ? 0x40000000u : static_cast<DWORD>(size);
        DWORD written = 0;
        ok = ::WriteFile(file, data, chunk, &written, nullptr) != 0;
        data += written;
        size -= written;
    }
    ok = ok && ::FlushFileBuffers(file) != 0;
    std::string reason = ok ? std::string() : last_error_text();
    ::CloseHandle(file);
    if (ok && !::MoveFileExW(tmp.c_str(), path.c_str(), MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)) {
        ok = false;
        reason = last_error_text();
    }
    if (!ok) {
        ::DeleteFileW(tmp.c_str());
        throw FileError("cannot write " + shown(path) + ": " + reason);
    }
}

std::filesystem::path environment_path(const char* name) {
    const std::wstring wide_name(name, name + std::strlen(name));  // the names are ASCII
    std::wstring value(260, L'\0');
    for (;;) {
        const DWORD n = ::GetEnvironmentVariableW(wide_name.c_str(), value.data(), static_cast<DWORD>(value.size()));
        if (n == 0) return {};  // unset (or empty)
        if (n < value.size()) return std::filesystem::path(value.substr(0, n));
        value.resize(n);  // too small: n is the size needed, its NUL included
    }
}

InputFile::InputFile(const std::filesystem::path& path) : shown_(shown(path)) {
    const HANDLE file = ::CreateFileW(path.c_str(), GENERIC_READ, FILE_SHARE_READ, nullptr, OPEN_EXISTING,
                                      FILE_FLAG_SEQUENTIAL_SCAN, nullptr);
    if (file == INVALID_HANDLE_VALUE) throw FileError("cannot open " + shown_ + ": " + last_error_text());
    handle_ = reinterpret_cast<std::intptr_t>(file);
}

std::size_t InputFile::read(std::uint8_t* data, std::size_t size) {
    const DWORD chunk = size > 0x40000000u ? 0x40000000u : static_cast<DWORD>(size);
    DWORD got = 0;
    if (!::ReadFile(reinterpret_cast<HANDLE>(handle_), data, chunk, &got, nullptr)) {
        throw FileError("cannot read " + shown_ + ": " + last_error_text());
    }
    return got;
}

void InputFile::close() noexcept {
    if (handle_ != -1) ::CloseHandle(reinterpret_cast<HANDLE>(std::exchange(handle_, -1)));
}

#else  // POSIX

namespace {

// fsync of the directory makes the rename itself durable.
void sync_directory(const std::filesystem::path& dir) {
    const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw FileError("cannot open the directory " + shown(dir) + ": " + errno_text(errno));
    const int rc = ::fsync(fd);
    const int code = errno;
    ::close(fd);
    // Some file systems cannot sync a directory (EINVAL); the rename is done all the same.
    if (rc != 0 && code != EINVAL) throw FileError("cannot sync " + shown(dir) + ": " + errno_text(code));
}

void write_all(int fd, const std::uint8_t* data, std::size_t size) {
    while (size > 0) {
        const ssize_t n = ::write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw FileError(errno_text(errno));
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
}

}  // namespace

void write_private_file(const std::filesystem::path& path, const std::uint8_t* data, std::size_t size) {
    std::filesystem::path tmp;
    int fd = -1;
    for (int attempt = 0; attempt < kNameAttempts && fd < 0; ++attempt) {
        tmp = temporary_name(path);
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) throw FileError("cannot create " + shown(tmp) + ": " + errno_text(errno));
    try {
        // The umask can only take bits away from 0600; make it exactly 0600, as the Python
        // client does, so both clients leave the same file.
        if (::fchmod(fd, 0600) != 0) throw FileError(errno_text(errno));
        write_all(fd, data, size);
        if (::fsync(fd) != 0) throw FileError(errno_text(errno));
        const int rc = ::close(std::exchange(fd, -1));
        if (rc != 0) throw FileError(errno_text(errno));
        if (::rename(tmp.c_str(), path.c_str()) != 0) throw FileError(errno_text(errno));
    } catch (const FileError& e) {
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
        throw FileError("cannot write " + shown(path) + ": " + e.what());
    }
    sync_directory(path.parent_path());
}

std::filesystem::path environment_path(const char* name) {
    const char* value = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read once, single thread
    if (value == nullptr || *value == '\0') return {};
    return std::filesystem::u8path(value);
}

InputFile::InputFile(const std::filesystem::path& path) : shown_(shown(path)) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw FileError("cannot open " + shown_ + ": " + errno_text(errno));
    handle_ = fd;
}

std::size_t InputFile::read(std::uint8_t* data, std::size_t size) {
    for (;;) {
        const ssize_t n = ::read(static_cast<int>(handle_), data, size);
        if (n >= 0) return static_cast<std::size_t>(n);
        if (errno != EINTR) throw FileError("cannot read " + shown_ + ": " + errno_text(errno));
    }
}

void InputFile::close() noexcept {
    if (handle_ != -1) ::close(static_cast<int>(std::exchange(handle_, -1)));
}

#endif

InputFile::InputFile(InputFile&& other) noexcept
    : shown_(std::move(other.shown_)), handle_(std::exchange(other.handle_, -1)) {}

InputFile& InputFile::operator=(InputFile&& other) noexcept {
    if (this != &other) {
        close();
        shown_ = std::move(other.shown_);
        handle_ = std::exchange(other.handle_, -1);
    }
    return *this;
}

InputFile::~InputFile() { close(); }

}  // namespace eft::platform
