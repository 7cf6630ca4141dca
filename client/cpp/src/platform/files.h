// The client's file-system calls that need more than the standard library gives: files
// only the user may read, written so that a crash leaves the old file or the new one, and
// a plain file reader whose errors are told apart from its end. POSIX and Windows
// implementations are chosen with #ifdef _WIN32, as in socket.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace eft::platform {

class FileError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Replaces `path` with `size` bytes, readable by the user only: a new file with a random
// name in the same directory, created exclusively (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600;
// on Windows CREATE_NEW with a DACL for the current user alone), synced, renamed over `path`,
// then the directory synced. Nothing is ever written through a symlink. Throws FileError.
void write_private_file(const std::filesystem::path& path, const std::uint8_t* data, std::size_t size);

// An environment variable's value as a path; empty when it is unset or empty. Windows
// gives it in UTF-16 (getenv's ANSI code page would mangle %APPDATA% for a user named,
// say, "Zoë Δ"); POSIX takes its bytes as UTF-8, as the rest of the client does.
std::filesystem::path environment_path(const char* name);

// A file opened for reading. Move-only; closed by the destructor.
class InputFile {
public:
    explicit InputFile(const std::filesystem::path& path);  // throws FileError
    InputFile(InputFile&& other) noexcept;
    InputFile& operator=(InputFile&& other) noexcept;
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;
    ~InputFile();

    // Up to `size` bytes; 0 only at the end of the file. Throws FileError on a read error.
    std::size_t read(std::uint8_t* data, std::size_t size);

private:
    void close() noexcept;
    std::string shown_;  // the path, for messages
    std::intptr_t handle_ = -1;
};

}  // namespace eft::platform
