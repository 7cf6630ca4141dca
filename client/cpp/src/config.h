// The client's local files (spec section 7): transfer.info, me.info and priv.key.
// Parsing is strict about content and tolerant about layout (CRLF, trailing NULs and
// spaces, Base64 wrapped at any width). Errors are UsageError (exit code 2).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto.h"
#include "wire.h"

namespace eft::config {

inline constexpr std::size_t kMaxUserName = 100;
inline constexpr std::size_t kBase64LineWidth = 72;
inline constexpr const char* kTransferInfo = "transfer.info";
inline constexpr const char* kMeInfo = "me.info";
inline constexpr const char* kPrivKey = "priv.key";

struct Endpoint {
    std::string host;
    std::uint16_t port = 0;
    std::string to_string() const;
};

// "host:port", "1.2.3.4:port" or "[v6]:port". Throws UsageError.
Endpoint parse_endpoint(std::string_view text);
// Throws UsageError unless 1..100 printable ASCII characters.
void validate_user_name(std::string_view name, std::string_view where);

// Lines with trailing NULs, spaces, tabs and '\r' removed; trailing empty lines dropped.
std::vector<std::string> split_lines(std::string_view text);

struct TransferInfo {
    Endpoint server;
    std::string name;
    std::optional<std::filesystem::path> file;  // line 3, relative to the config dir
};
TransferInfo parse_transfer_info(std::string_view text);

// Move-only: the private key exists once, in a buffer wiped when freed.
struct MeInfo {
    std::string name;
    wire::ClientId id{};
    crypto::SecretBytes private_key_der;  // PKCS#8 (or PKCS#1) DER

    MeInfo() = default;
    MeInfo(std::string name_, const wire::ClientId& id_, crypto::SecretBytes der)
        : name(std::move(name_)), id(id_), private_key_der(std::move(der)) {}
    // SecByteBlock has no move constructor (a copy could throw); swapping cannot, and an
    // empty SecByteBlock allocates nothing (AllocatorWithCleanup::allocate(0) is null).
    // NOLINTNEXTLINE(bugprone-exception-escape)
    MeInfo(MeInfo&& other) noexcept : name(std::move(other.name)), id(other.id) {
        private_key_der.swap(other.private_key_der);
    }
    MeInfo& operator=(MeInfo&& other) noexcept {
        name.swap(other.name);
        id = other.id;
        private_key_der.swap(other.private_key_der);
        return *this;
    }
    MeInfo(const MeInfo&) = delete;
    MeInfo& operator=(const MeInfo&) = delete;
    ~MeInfo() = default;
};
// `fallback_key_base64` (priv.key) is used only when me.info has no key lines.
MeInfo parse_me_info(std::string_view text, std::optional<std::string_view> fallback_key_base64 = {});
// The files' text, in wiped buffers: it is the private key in Base64.
crypto::SecretBytes format_me_info(const MeInfo& me);
crypto::SecretBytes format_priv_key(const crypto::SecretBytes& private_key_der);

wire::ClientId parse_client_id(std::string_view hex);
std::string wrap(std::string_view text, std::size_t width);

// Whole-file helpers with a size cap (a config file is small; refuse a huge one).
// The content lands in a wiped buffer, since me.info and priv.key hold the private key.
std::optional<crypto::SecretBytes> read_small_file(const std::filesystem::path& path);
inline std::string_view text_of(const crypto::SecretBytes& bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}
// Writes a file only the user can read (0600), via an exclusively created temporary file,
// fsync and a rename, so an interrupted write leaves the old file (platform/files.h).
void write_file_atomically(const std::filesystem::path& path, const crypto::SecretBytes& content);

// Where the identity lives (docs/IDENTITY.md). The per-user directory of eft:
// $XDG_CONFIG_HOME/eft (an absolute value only), else ~/.config/eft; %APPDATA%\eft on
// Windows. Empty if none can be found (no HOME).
std::filesystem::path user_config_dir();
// "host_port" with every character outside [A-Za-z0-9.-] replaced by '_'.
std::string server_directory_name(const Endpoint& server);
// The working directory if it holds me.info or transfer.info (the seed's layout), else
// the per-user directory of this server: one identity per server.
std::filesystem::path locate_identity_dir(const std::filesystem::path& workdir, const Endpoint& server);
// Renames `dir`/NAME to NAME.replaced-<UTC time> for each file present; never deletes.
std::vector<std::filesystem::path> set_aside(const std::filesystem::path& dir,
                                             const std::vector<std::string>& names);

// The configuration directory (transfer.info) and the identity's (me.info, priv.key):
// the same one given --dir, else as locate_identity_dir says.
class ConfigDir {
public:
    explicit ConfigDir(std::filesystem::path dir);
    ConfigDir(std::filesystem::path dir, std::filesystem::path identity_dir);
    const std::filesystem::path& path() const noexcept { return dir_; }
    const std::filesystem::path& identity_path() const noexcept { return identity_dir_; }
    void use_identity_dir(std::filesystem::path identity_dir) { identity_dir_ = std::move(identity_dir); }
    std::optional<TransferInfo> load_transfer_info() const;
    std::optional<MeInfo> load_me_info() const;
    // me.info and priv.key, the directory made 0700 if new. An identity already there
    // with another client id (or unreadable) is set aside first, never overwritten;
    // returns where it went.
    std::vector<std::filesystem::path> save_identity(const MeInfo& me) const;

private:
    std::filesystem::path dir_;
    std::filesystem::path identity_dir_;
};

}  // namespace eft::config
