#include "config.h"

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <system_error>

#include "crypto.h"
#include "errors.h"
#include "platform/files.h"

namespace eft::config {
namespace {

constexpr std::uintmax_t kMaxConfigFileSize = 1u << 20;

bool is_printable_ascii(char c) { return c >= 0x20 && c <= 0x7E; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

std::string Endpoint::to_string() const {
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

Endpoint parse_endpoint(std::string_view text) {
    text = trim(text);
    const std::string shown(text);
    std::string_view host;
    std::string_view port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            throw UsageError("'" + shown + "' is not HOST:PORT");
        }
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos) throw UsageError("'" + shown + "' is not HOST:PORT");
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) {
            throw UsageError("'" + shown + "': write an IPv6 address as [ADDRESS]:PORT");
        }
    }
    if (host.empty()) throw UsageError("'" + shown + "' has no host");
    for (const char c : host) {
        if (!is_printable_ascii(c) || c == ' ') throw UsageError("'" + shown + "' has a bad host");
    }
    if (port.empty() || port.size() > 5) throw UsageError("'" + shown + "' has a bad port");
    unsigned long value = 0;
    for (const char c : port) {
        if (c < '0' || c > '9') throw UsageError("'" + shown + "' has a bad port");
        value = value * 10 + static_cast<unsigned long>(c - '0');
    }
    if (value == 0 || value > 65535) throw UsageError("'" + shown + "': port must be 1-65535");
    return Endpoint{std::string(host), static_cast<std::uint16_t>(value)};
}

void validate_user_name(std::string_view name, std::string_view where) {
    if (name.empty()) throw UsageError(std::string(where) + ": the user name is empty");
    if (name.size() > kMaxUserName) {
        throw UsageError(std::string(where) + ": the user name is " + std::to_string(name.size()) +
                         " characters long; at most 100 are allowed");
    }
    for (const char c : name) {
        if (!is_printable_ascii(c)) {
            throw UsageError(std::string(where) + ": the user name must be printable ASCII");
        }
    }
}

std::vector<std::string> split_lines(std::string_view text) {
    std::vector<std::string> lines;
    std::size_t start = 0;
    while (start <= text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(start, end - start);
        while (!line.empty() && (line.back() == '\0' || line.back() == ' ' || line.back() == '\t' ||
                                 line.back() == '\r')) {
            line.remove_suffix(1);
        }
        lines.emplace_back(line);
        start = end + 1;
    }
    while (!lines.empty() && lines.back().empty()) lines.pop_back();
    return lines;
}

TransferInfo parse_transfer_info(std::string_view text) {
    const auto lines = split_lines(text);
    if (lines.size() < 2) {
        throw UsageError("transfer.info needs line 1 HOST:PORT and line 2 the user name");
    }
    TransferInfo info;
    try {
        info.server = parse_endpoint(lines[0]);
    } catch (const UsageError& e) {
        throw UsageError(std::string("transfer.info line 1: ") + e.what());
    }
    info.name = lines[1];
    validate_user_name(info.name, "transfer.info line 2");
    if (lines.size() >= 3 && !lines[2].empty()) info.file = std::filesystem::u8path(lines[2]);
    if (lines.size() > 3) {
        for (std::size_t i = 3; i < lines.size(); ++i) {
            if (!lines[i].empty()) {
                throw UsageError("transfer.info has more than 3 lines (one file per transfer.info; "
                                 "pass several files on the command line)");
            }
        }
    }
    return info;
}

wire::ClientId parse_client_id(std::string_view hex) {
    hex = trim(hex);
    if (hex.size() != 2 * wire::kClientIdSize) {
        throw UsageError("me.info line 2: the client id must be 32 hex characters");
    }
    wire::ClientId id{};
    for (std::size_t i = 0; i < id.size(); ++i) {
        const int hi = hex_value(hex[2 * i]);
        const int lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) throw UsageError("me.info line 2: the client id is not hex");
        id[i] = static_cast<std::uint8_t>(hi * 16 + lo);
    }
    return id;
}

MeInfo parse_me_info(std::string_view text, std::optional<std::string_view> fallback_key_base64) {
    // Lines 1 and 2 (name, id) are split as strings; the key lines never are: their
    // characters go straight into a wiped buffer.
    std::size_t key_start = text.size();
    std::size_t newlines = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\n' && ++newlines == 2) {
            key_start = i + 1;
            break;
        }
    }
    const auto lines = split_lines(text.substr(0, key_start));
    if (lines.size() < 2) {
        throw UsageError("me.info needs the user name, the client id and the private key");
    }
    MeInfo me;
    me.name = lines[0];
    if (me.name.empty() || me.name.size() > wire::kMaxNameLength) {
        throw UsageError("me.info line 1: the user name must be 1-254 characters");
    }
    for (const char c : me.name) {
        if (!is_printable_ascii(c)) throw UsageError("me.info line 1: the user name must be printable ASCII");
    }
    me.id = parse_client_id(lines[1]);
    // Each key line loses its trailing NULs, spaces, tabs and '\r' (as split_lines does);
    // what is left is Base64, whose decoder skips line breaks.
    crypto::SecretBytes key_text(text.size() - key_start + 1);  // +1: a last line without its newline
    std::size_t used = 0;
    bool any = false;
    for (std::string_view rest = text.substr(key_start); !rest.empty();) {
        const std::size_t end = std::min(rest.find('\n'), rest.size());
        std::string_view line = rest.substr(0, end);
        while (!line.empty() && (line.back() == '\0' || line.back() == ' ' || line.back() == '\t' ||
                                 line.back() == '\r')) {
            line.remove_suffix(1);
        }
        for (const char c : line) {
            key_text[used++] = static_cast<std::uint8_t>(c);
            any = any || (c != ' ' && c != '\t');
        }
        key_text[used++] = '\n';
        rest.remove_prefix(std::min(end + 1, rest.size()));
    }
    std::string_view key_base64 = text_of(key_text).substr(0, used);
    std::string where = "me.info";
    if (!any) {
        if (!fallback_key_base64) throw UsageError("me.info has no private key (line 3 onward)");
        key_base64 = *fallback_key_base64;
        where = "priv.key";
    }
    try {
        me.private_key_der = crypto::base64_decode_secret(key_base64);
        (void)crypto::RsaPrivateKey::from_der(me.private_key_der);
    } catch (const crypto::CryptoError& e) {
        throw UsageError(where + ": the private key cannot be loaded: " + e.what());
    }
    return me;
}

std::string wrap(std::string_view text, std::size_t width) {
    std::string out;
    for (std::size_t at = 0; at < text.size(); at += width) {
        out.append(text.substr(at, width));
        out.push_back('\n');
    }
    return out;
}

crypto::SecretBytes format_me_info(const MeInfo& me) {
    const std::string head = me.name + "\n" + wire::to_hex(me.id) + "\n";
    const crypto::SecretBytes key = format_priv_key(me.private_key_der);
    crypto::SecretBytes out(head.size() + key.size());
    std::copy(head.begin(), head.end(), out.begin());
    std::copy(key.begin(), key.end(), out.begin() + head.size());
    return out;
}

crypto::SecretBytes format_priv_key(const crypto::SecretBytes& private_key_der) {
    const crypto::SecretBytes b64 = crypto::base64_encode_secret(private_key_der);
    const std::size_t lines = (b64.size() + kBase64LineWidth - 1) / kBase64LineWidth;
    crypto::SecretBytes out(b64.size() + lines);
    std::size_t at = 0;
    for (std::size_t i = 0; i < b64.size(); i += kBase64LineWidth) {
        const std::size_t n = std::min(kBase64LineWidth, b64.size() - i);
        std::copy(b64.begin() + i, b64.begin() + i + n, out.begin() + at);
        at += n;
        out[at++] = '\n';
    }
    return out;
}

std::optional<crypto::SecretBytes> read_small_file(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return std::nullopt;
    if (!std::filesystem::is_regular_file(path, ec)) {
        throw UsageError(path.u8string() + " is not a regular file");
    }
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) throw UsageError("cannot read " + path.u8string() + ": " + ec.message());
    if (size > kMaxConfigFileSize) throw UsageError(path.u8string() + " is too large to be a config file");
    try {
        platform::InputFile in(path);
        crypto::SecretBytes content(static_cast<std::size_t>(size) + 1);
        std::size_t used = 0;
        // One byte more than the size: a file that grew meanwhile is still read whole up to the cap.
        while (used < content.size()) {
            const std::size_t n = in.read(content.data() + used, content.size() - used);
            if (n == 0) break;
            used += n;
        }
        content.resize(used);
        return content;
    } catch (const platform::FileError& e) {
        throw UsageError(e.what());
    }
}

void write_file_atomically(const std::filesystem::path& path, const crypto::SecretBytes& content) {
    try {
        platform::write_private_file(path, content.data(), content.size());
    } catch (const platform::FileError& e) {
        throw UsageError(e.what());
    }
}

namespace {

std::filesystem::path absolute_env(const char* variable) {
    const char* value = std::getenv(variable);  // NOLINT(concurrency-mt-unsafe): read once, single thread
    if (value == nullptr || *value == '\0') return {};
    std::filesystem::path path = std::filesystem::u8path(value);
    return path.is_absolute() ? path : std::filesystem::path{};  // XDG: a relative value is ignored
}

std::string utc_stamp() {
    const std::time_t now = std::time(nullptr);
    std::tm parts{};
#ifdef _WIN32
    gmtime_s(&parts, &now);
#else
    gmtime_r(&now, &parts);
#endif
    char text[32] = {};
    (void)std::strftime(text, sizeof text, "%Y%m%dT%H%M%SZ", &parts);
    return text;
}

}  // namespace

std::filesystem::path user_config_dir() {
    if (auto xdg = absolute_env("XDG_CONFIG_HOME"); !xdg.empty()) return xdg / "eft";
#ifdef _WIN32
    if (auto appdata = absolute_env("APPDATA"); !appdata.empty()) return appdata / "eft";
#endif
    if (auto home = absolute_env("HOME"); !home.empty()) return home / ".config" / "eft";
    return {};
}

std::string server_directory_name(const Endpoint& server) {
    std::string name = server.host;
    for (char& c : name) {
        const bool kept = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                          c == '.' || c == '-';
        if (!kept) c = '_';
    }
    return name + "_" + std::to_string(server.port);
}

std::filesystem::path locate_identity_dir(const std::filesystem::path& workdir, const Endpoint& server) {
    std::error_code ec;
    if (std::filesystem::exists(workdir / kMeInfo, ec) || std::filesystem::exists(workdir / kTransferInfo, ec)) {
        return workdir;  // the seed's layout: me.info next to transfer.info
    }
    const std::filesystem::path base = user_config_dir();
    if (base.empty()) {
        throw UsageError("no per-user directory for the identity (neither XDG_CONFIG_HOME nor HOME "
                         "is set): pass --dir DIR");
    }
    return base / "servers" / server_directory_name(server);
}

std::vector<std::filesystem::path> set_aside(const std::filesystem::path& dir,
                                             const std::vector<std::string>& names) {
    const std::string stamp = utc_stamp();
    std::vector<std::filesystem::path> moved;
    for (const auto& name : names) {
        const std::filesystem::path source = dir / name;
        std::error_code ec;
        if (!std::filesystem::exists(source, ec)) continue;
        std::filesystem::path target = dir / (name + ".replaced-" + stamp);
        for (int suffix = 2; std::filesystem::exists(target, ec); ++suffix) {
            target = dir / (name + ".replaced-" + stamp + "-" + std::to_string(suffix));
        }
        std::filesystem::rename(source, target, ec);
        if (ec) throw UsageError("cannot set " + source.u8string() + " aside: " + ec.message());
        moved.push_back(target);
    }
    return moved;
}

ConfigDir::ConfigDir(std::filesystem::path dir) : ConfigDir(dir, dir) {}

ConfigDir::ConfigDir(std::filesystem::path dir, std::filesystem::path identity_dir)
    : dir_(std::move(dir)), identity_dir_(std::move(identity_dir)) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir_, ec)) {
        throw UsageError("config directory " + dir_.u8string() + " does not exist");
    }
}

std::optional<TransferInfo> ConfigDir::load_transfer_info() const {
    const auto text = read_small_file(dir_ / kTransferInfo);
    if (!text) return std::nullopt;
    return parse_transfer_info(text_of(*text));
}

std::optional<MeInfo> ConfigDir::load_me_info() const {
    const auto text = read_small_file(identity_dir_ / kMeInfo);
    if (!text) return std::nullopt;
    const auto priv = read_small_file(identity_dir_ / kPrivKey);
    std::optional<std::string_view> fallback;
    if (priv) fallback = text_of(*priv);
    return parse_me_info(text_of(*text), fallback);
}

std::vector<std::filesystem::path> ConfigDir::save_identity(const MeInfo& me) const {
    std::error_code ec;
    if (!std::filesystem::is_directory(identity_dir_, ec)) {
        std::filesystem::create_directories(identity_dir_, ec);
        if (ec) throw UsageError("cannot create " + identity_dir_.u8string() + ": " + ec.message());
        std::filesystem::permissions(identity_dir_, std::filesystem::perms::owner_all,
                                     std::filesystem::perm_options::replace, ec);
    }
    bool replaced = false;
    try {
        const auto old = load_me_info();
        replaced = old && old->id != me.id;
    } catch (const UsageError&) {
        replaced = true;  // unreadable: kept aside all the same, the user may mend it
    }
    std::vector<std::filesystem::path> moved;
    if (replaced) moved = set_aside(identity_dir_, {kMeInfo, kPrivKey});
    write_file_atomically(identity_dir_ / kPrivKey, format_priv_key(me.private_key_der));
    write_file_atomically(identity_dir_ / kMeInfo, format_me_info(me));
    return moved;
}

}  // namespace eft::config
