-- Wireshark / tshark dissector for eft, protocol versions 3 and 4.
--
--   wireshark -X lua_script:monitoring/wireshark/eft.lua docs/captures/v3-upload.pcapng
--   tshark -X lua_script:monitoring/wireshark/eft.lua -r capture.pcapng -O eft
--
-- Version 3 (docs/PROTOCOL-v3.md) is decoded field by field. Version 4
-- (docs/PROTOCOL-v4.md) shows its headers, the three Noise handshake messages (laid out
-- by the table V4_HANDSHAKE below, the one place to change if the handshake's payload
-- changes) and the record layer: code, ciphertext length and tag. Record bodies are
-- sealed; nothing here decrypts.
--
-- Frames are found on the TCP port of the preference "eft.tcp_port" (default: the
-- repository's port.info, else 1256) and, with "eft.heuristic" on, on any port whose
-- first client bytes form a well-formed request header (see looks_like_eft below).

local eft = Proto("eft", "eft encrypted file transfer")

local REQUEST_HEADER_LEN = 23
local RESPONSE_HEADER_LEN = 7
local NAME_LEN = 255
local PUBLIC_KEY_LEN = 160
local TAG_LEN = 16
local V4_CHUNK = 1048576
-- The largest record our v4 server accepts: a data record's 9-byte prefix, one chunk, a tag.
local V4_MAX_RECORD = 9 + V4_CHUNK + TAG_LEN
-- A v3 server skips a bad request's payload only up to this size, then closes (PROTOCOL-v3 §1).
local V3_MAX_SKIP = 65536
-- Payloads larger than this are not reassembled: their header (and a v3 828's fixed
-- fields) is decoded where it arrives and the rest followed segment by segment, so that a
-- 1 MiB record shows as it comes, or as far as it ever comes (a flood, a cut).
local STREAM_ABOVE = 65536

local REQUEST_NAMES = {
    [825] = "register", [826] = "send public key", [827] = "reconnect",
    [828] = "file packet", [900] = "CRC ok", [901] = "CRC differs, resending",
    [902] = "CRC differs, giving up",
}
local RESPONSE_NAMES = {
    [1600] = "registered", [1601] = "registration refused", [1602] = "public key accepted",
    [1603] = "file received", [1604] = "acknowledged", [1605] = "reconnect approved",
    [1606] = "reconnect denied", [1607] = "server error",
}
-- Version 4 reuses the codes with other meanings (PROTOCOL-v4 §4-6).
local V4_NAMES = {
    [825] = "register", [826] = "hello", [827] = "log in", [828] = "file",
    [900] = "digest ok", [901] = "digest differs", [902] = "give up",
    [903] = "commit if (a streamed file's verdict, §8.1)",
    [904] = "pack (several small files, §8.2)",
    [1600] = "registered", [1601] = "registration refused", [1602] = "server hello",
    [1603] = "file received", [1604] = "resume / ack", [1605] = "logged in",
    [1606] = "log-in refused", [1607] = "error", [1608] = "pack's outcomes (§8.2)",
}
local ALL_CODE_NAMES = {}
for code, name in pairs(REQUEST_NAMES) do ALL_CODE_NAMES[code] = name end
for code, name in pairs(RESPONSE_NAMES) do ALL_CODE_NAMES[code] = name end

-- Exact payload sizes of version 3 (PROTOCOL-v3 §2); 828 is 267 + content.
local V3_REQUEST_SIZES = { [825] = 255, [826] = 415, [827] = 255, [900] = 255, [901] = 255, [902] = 255 }
local V3_PACKET_FIXED = 267
local V3_RESPONSE_SIZES = {
    [1600] = { 16 }, [1601] = { 0 }, [1602] = { 144 }, [1603] = { 279 },
    [1604] = { 16, 0 }, [1605] = { 144 }, [1606] = { 16, 0 }, [1607] = { 0 },
}

-- The DER prefix of an RSA-1024, e = 17 SubjectPublicKeyInfo, and its suffix (INTEGER 17).
local RSA_DER_PREFIX = "30819d300d06092a864886f70d010101050003818b0030818702818100"
local RSA_DER_SUFFIX = "020111"

-- Version 4's handshake, one entry per message: which header it has, the payload sizes
-- the protocol allows, and how its payload is cut. A part's length is a number or "rest";
-- a sealed part is ciphertext followed by a 16-byte tag; a part may name a decoder
-- (V4_PART_DECODERS). Revision 1 had an empty Noise payload in message 1 and a 12-byte
-- server hello; revision 2 sends an offer in clear in message 1 (6 to 64 bytes) and a
-- 20-byte hello. Both fit the table. Change this table (only) if the handshake changes.
local V4_HANDSHAKE = {
    {
        key = "cookie", direction = "response", codes = { [1602] = true },
        title = "cookie reply (the server is under load: message 1 again, with it)",
        sizes = { min = 16, max = 16 },
        parts = { { key = "cookie", name = "cookie (in clear; no DH went into it)", len = 16 } },
    },
    {
        key = "msg1", direction = "request", codes = { [826] = true },
        title = "handshake message 1 (-> e)", sizes = { min = 32, max = 96 },
        parts = { { key = "e", name = "ephemeral public key e", len = 32 },
                  { key = "offer", name = "offer (Noise payload, in clear; none in revision 1)",
                    len = "rest", decoder = "offer" } },
    },
    {
        key = "msg2", direction = "response", codes = { [1602] = true },
        title = "handshake message 2 (<- e, ee, s, es)", sizes = { min = 108, max = 200 },
        parts = { { key = "e", name = "ephemeral public key e", len = 32 },
                  { key = "s", name = "encrypted static key s", len = 48, sealed = true },
                  { key = "payload", name = "encrypted server hello", len = "rest", sealed = true } },
    },
    {
        key = "msg3", direction = "request", codes = { [825] = true, [827] = true },
        title = "handshake message 3 (-> s, se)", sizes = { min = 69, max = 232 },
        parts = { { key = "s", name = "encrypted static key s", len = 48, sealed = true },
                  { key = "payload", name = "encrypted intent", len = "rest", sealed = true } },
    },
}
-- A handshake message larger than this is not decoded as one (no peer would read it).
local V4_HANDSHAKE_MAX = 65535

-- Fields --------------------------------------------------------------------------------
local f = {
    direction = ProtoField.string("eft.direction", "Direction"),
    client_id = ProtoField.bytes("eft.client_id", "Client id"),
    version = ProtoField.uint8("eft.version", "Version", base.DEC),
    code = ProtoField.uint16("eft.code", "Code", base.DEC, ALL_CODE_NAMES),
    payload_size = ProtoField.uint32("eft.payload_size", "Payload size", base.DEC),
    partial = ProtoField.uint32("eft.partial", "Payload bytes in this segment", base.DEC),
    continued = ProtoField.bytes("eft.continued", "Payload continued from an earlier segment"),
    continued_left = ProtoField.uint32("eft.continued.left", "Payload bytes still to come", base.DEC),
    -- version 3
    name = ProtoField.string("eft.v3.name", "Name"),
    public_key = ProtoField.bytes("eft.v3.public_key", "Public key (DER)"),
    public_key_len = ProtoField.uint32("eft.v3.public_key.length", "Public key length", base.DEC),
    modulus = ProtoField.bytes("eft.v3.public_key.modulus", "RSA modulus"),
    exponent = ProtoField.uint8("eft.v3.public_key.exponent", "RSA public exponent", base.DEC),
    encrypted_aes_key = ProtoField.bytes("eft.v3.encrypted_aes_key", "Encrypted AES key (RSA-OAEP)"),
    content_size = ProtoField.uint32("eft.v3.content_size", "Content size", base.DEC),
    orig_file_size = ProtoField.uint32("eft.v3.orig_file_size", "Original file size", base.DEC),
    packet_number = ProtoField.uint16("eft.v3.packet_number", "Packet number", base.DEC),
    total_packets = ProtoField.uint16("eft.v3.total_packets", "Total packets", base.DEC),
    file_name = ProtoField.string("eft.v3.file_name", "File name"),
    content = ProtoField.bytes("eft.v3.content", "Content (AES-CBC ciphertext)"),
    content_len = ProtoField.uint32("eft.v3.content.length", "Content length", base.DEC),
    cksum = ProtoField.uint32("eft.v3.cksum", "cksum", base.DEC_HEX),
    -- version 4
    handshake = ProtoField.string("eft.v4.handshake", "Handshake message"),
    sealed_len = ProtoField.uint32("eft.v4.sealed.plaintext_length", "Plaintext length", base.DEC),
    tag = ProtoField.bytes("eft.v4.tag", "Authentication tag"),
    record_counter = ProtoField.uint64("eft.v4.record.counter", "Record counter (implicit nonce)", base.DEC),
    ciphertext = ProtoField.bytes("eft.v4.record.ciphertext", "Ciphertext"),
    plaintext_len = ProtoField.uint32("eft.v4.record.plaintext_length", "Plaintext length", base.DEC),
    trailing = ProtoField.bytes("eft.trailing", "Undecoded bytes"),
    offer_revisions = ProtoField.uint16("eft.v4.offer.revisions", "Revisions offered (bit set)", base.HEX),
    offer_features = ProtoField.uint32("eft.v4.offer.features", "Features offered (bit set)", base.HEX),
    offer_cookie = ProtoField.bytes("eft.v4.offer.cookie", "Cookie (from the server's cookie reply)"),
    offer_more = ProtoField.bytes("eft.v4.offer.later_fields", "Fields of a later revision"),
}
local hs_fields = {}
for _, message in ipairs(V4_HANDSHAKE) do
    for _, part in ipairs(message.parts) do
        local abbrev = "eft.v4." .. message.key .. "." .. part.key
        hs_fields[abbrev] = ProtoField.bytes(abbrev, part.name)
        f[abbrev] = hs_fields[abbrev]
    end
end
local field_list = {}
for _, field in pairs(f) do table.insert(field_list, field) end
eft.fields = field_list

local e = {
    bad_version = ProtoExpert.new("eft.bad_version", "Unknown protocol version",
        expert.group.MALFORMED, expert.severity.ERROR),
    unknown_code = ProtoExpert.new("eft.unknown_code", "Unknown code for this direction",
        expert.group.MALFORMED, expert.severity.ERROR),
    bad_size = ProtoExpert.new("eft.bad_size", "Payload size does not fit the code",
        expert.group.MALFORMED, expert.severity.ERROR),
    bad_string = ProtoExpert.new("eft.bad_string", "Malformed string field",
        expert.group.MALFORMED, expert.severity.WARN),
    bad_key = ProtoExpert.new("eft.bad_key", "Public key is not an RSA-1024, e = 17 key",
        expert.group.MALFORMED, expert.severity.WARN),
    bad_packet = ProtoExpert.new("eft.bad_packet", "Packet numbering out of range",
        expert.group.MALFORMED, expert.severity.WARN),
    untrusted = ProtoExpert.new("eft.untrusted_framing", "Framing no longer trustworthy: the rest of this segment is not decoded",
        expert.group.MALFORMED, expert.severity.ERROR),
    continues = ProtoExpert.new("eft.continues", "Payload continues in later segments",
        expert.group.REASSEMBLE, expert.severity.CHAT),
    replayed = ProtoExpert.new("eft.v4.replayed", "Record replayed on its connection",
        expert.group.SECURITY, expert.severity.WARN),
    altered = ProtoExpert.new("eft.v4.altered", "Record altered (tag of another record)",
        expert.group.SECURITY, expert.severity.WARN),
    relayed = ProtoExpert.new("eft.v4.relayed", "Record seen on another connection (relayed)",
        expert.group.SECURITY, expert.severity.NOTE),
    v3_repeat = ProtoExpert.new("eft.v3.repeated", "828 repeated on its connection",
        expert.group.SECURITY, expert.severity.WARN),
    v3_info = ProtoExpert.new("eft.v3.cleartext", "Version 3: sent in the clear",
        expert.group.SECURITY, expert.severity.NOTE),
}
local expert_list = {}
for _, ex in pairs(e) do table.insert(expert_list, ex) end
eft.experts = expert_list

-- Preferences ---------------------------------------------------------------------------
local function default_port()
    local source = debug.getinfo(1, "S").source
    if source:sub(1, 1) == "@" then
        local dir = source:sub(2):match("^(.*)[/\\]") or "."
        local file = io.open(dir .. "/../../port.info", "r")
        if file then
            local port = tonumber((file:read("*l") or ""):match("^%s*(%d+)%s*$"))
            file:close()
            if port and port >= 1 and port <= 65535 then return port end
        end
    end
    return 1256
end

local DEFAULT_PORT = default_port()
eft.prefs.tcp_port = Pref.uint("TCP port", DEFAULT_PORT, "The server's port (0: none, heuristic only)")
eft.prefs.heuristic = Pref.bool("Heuristic on other ports", true,
    "Recognise eft on any TCP port from a well-formed first request header")

local tcp_port_table = DissectorTable.get("tcp.port")
local registered_port = 0
local function register_port()
    if registered_port ~= 0 then tcp_port_table:remove(registered_port, eft) end
    registered_port = eft.prefs.tcp_port
    if registered_port ~= 0 then tcp_port_table:add(registered_port, eft) end
end
function eft.prefs_changed() register_port() end

-- Per-connection state: the server's port (to tell requests from responses) and v4
-- record counters, assigned on the first pass and looked up on later ones.
local f_tcp_stream = Field.new("tcp.stream")
local streams = {}
local seen_tags = {}  -- v4 record tag -> where it was first seen
function eft.init()
    streams = {}
    seen_tags = {}
end

local function stream_state(pinfo)
    local fi = f_tcp_stream()
    local id = fi and fi.value or -1
    local state = streams[id]
    if not state then
        state = { id = id, server_port = nil, counters = { request = 0, response = 0 }, assigned = {}, lost = {}, packets = {},
            streaming = {}, cont_at = {} }
        streams[id] = state
    end
    return state
end

local function is_response(pinfo, state)
    if state.server_port then return pinfo.src_port == state.server_port end
    if registered_port ~= 0 and (pinfo.src_port == registered_port) ~= (pinfo.dst_port == registered_port) then
        return pinfo.src_port == registered_port
    end
    return pinfo.src_port < pinfo.dst_port  -- a guess: the client's port is ephemeral
end

-- Helpers -------------------------------------------------------------------------------
local function append_info(pinfo, text)
    local current = tostring(pinfo.cols.info)
    if current:sub(1, 4) == "eft " then
        pinfo.cols.info:append(", " .. text)
    else
        pinfo.cols.info:set("eft " .. text)
    end
end

-- A 255-byte string slot: text up to the first NUL, printable ASCII (PROTOCOL-v3 §1).
local function add_string(tree, field, range)
    local bytes = range:bytes()
    local text_len = nil
    for i = 0, bytes:len() - 1 do
        if bytes:get_index(i) == 0 then text_len = i break end
    end
    local text = range:raw(0, text_len or bytes:len())
    local item = tree:add(field, range, text)
    if #text > 40 then text = text:sub(1, 40) .. "..." end
    if not text_len then
        item:add_proto_expert_info(e.bad_string, "No NUL terminator in the 255-byte slot")
    elseif text_len == 0 then
        item:add_proto_expert_info(e.bad_string, "Empty string")
    else
        for i = 0, text_len - 1 do
            local b = bytes:get_index(i)
            if b < 0x20 or b > 0x7e then
                item:add_proto_expert_info(e.bad_string, "Non-printable byte in the string")
                break
            end
        end
    end
    return text
end

local function add_public_key(tree, range)
    local item = tree:add(f.public_key, range)
    item:add(f.public_key_len, range, range:len()):set_generated()
    local hex = tostring(range:bytes()):lower()
    local prefix_len = #RSA_DER_PREFIX / 2
    if hex:sub(1, #RSA_DER_PREFIX) == RSA_DER_PREFIX and hex:sub(-#RSA_DER_SUFFIX) == RSA_DER_SUFFIX then
        item:add(f.modulus, range(prefix_len, 128))
        item:add(f.exponent, range(PUBLIC_KEY_LEN - 1, 1))
    else
        item:add_proto_expert_info(e.bad_key)
    end
end

-- Version 3 payloads --------------------------------------------------------------------
local function dissect_v3_request(code, payload, tree, pinfo, state, whole)
    local summary = tostring(code) .. " " .. (REQUEST_NAMES[code] or "?")
    if code == 825 or code == 827 then
        summary = summary .. " name=" .. add_string(tree, f.name, payload(0, NAME_LEN))
    elseif code == 826 then
        summary = summary .. " name=" .. add_string(tree, f.name, payload(0, NAME_LEN))
        add_public_key(tree, payload(NAME_LEN, PUBLIC_KEY_LEN))
        tree:add_proto_expert_info(e.v3_info, "Public key in the clear, unauthenticated (EFT-01)")
    elseif code == 828 then
        tree:add_le(f.content_size, payload(0, 4))
        tree:add_le(f.orig_file_size, payload(4, 4))
        local number = payload(8, 2):le_uint()
        local total = payload(10, 2):le_uint()
        local item = tree:add_le(f.packet_number, payload(8, 2))
        tree:add_le(f.total_packets, payload(10, 2))
        if total == 0 or number > total then
            item:add_proto_expert_info(e.bad_packet, "Packet " .. number .. " of " .. total)
        end
        local name = add_string(tree, f.file_name, payload(12, NAME_LEN))
        if whole and payload:len() <= 65536 then
            local body = tostring(payload:bytes())
            local earlier = state.packets[body]
            if earlier == nil and not pinfo.visited then
                state.packets[body] = pinfo.number
            elseif earlier and earlier < pinfo.number then
                item:add_proto_expert_info(e.v3_repeat, "Byte for byte the 828 of frame " .. earlier
                    .. ": a resend or a replay, version 3 cannot tell them apart (EFT-09)")
            end
        end
        local content_len = payload:len() - V3_PACKET_FIXED
        if content_len > 0 then
            local content = tree:add(f.content, payload(V3_PACKET_FIXED, content_len))
            content:add(f.content_len, payload(V3_PACKET_FIXED, content_len), content_len):set_generated()
        else
            tree:add(f.content_len, content_len):set_generated()
        end
        summary = summary .. " " .. number .. "/" .. total .. " " .. name
    else -- 900, 901, 902
        summary = summary .. " " .. add_string(tree, f.file_name, payload(0, NAME_LEN))
    end
    return summary
end

local function dissect_v3_response(code, payload, tree, pinfo)
    local summary = tostring(code) .. " " .. (RESPONSE_NAMES[code] or "?")
    if payload:len() >= 16 then tree:add(f.client_id, payload(0, 16)) end
    if code == 1602 or code == 1605 then
        tree:add(f.encrypted_aes_key, payload(16, 128))
    elseif code == 1603 then
        tree:add_le(f.content_size, payload(16, 4))
        local name = add_string(tree, f.file_name, payload(20, NAME_LEN))
        local cksum = payload(275, 4):le_uint()
        tree:add_le(f.cksum, payload(275, 4))
        tree:add_proto_expert_info(e.v3_info, "CRC of the plaintext in the clear (EFT-08)")
        summary = summary .. " " .. name .. string.format(" cksum=%u", cksum)
    end
    return summary
end

-- Version 4 payloads --------------------------------------------------------------------
local function handshake_message(direction, code, client_id_zero, size)
    -- Two messages share a code (1602: the cookie reply and message 2): the one whose
    -- sizes hold ``size``, else the last that matches (its size is then reported).
    local found = nil
    for _, message in ipairs(V4_HANDSHAKE) do
        if message.direction == direction and message.codes[code] then
            -- Records never carry 825/826/827 or 1602; a request's handshake header has
            -- a zero client id, which no record header has.
            if direction == "response" or client_id_zero then
                if size >= message.sizes.min and size <= message.sizes.max then return message end
                found = message
            end
        end
    end
    return found
end

local function add_sealed(tree, field, range, label)
    local item = tree:add(field, range)
    if range:len() >= TAG_LEN then
        item:add(f.sealed_len, range, range:len() - TAG_LEN):set_generated()
        item:add(f.tag, range(range:len() - TAG_LEN, TAG_LEN))
        item:append_text(" (" .. (range:len() - TAG_LEN) .. " bytes sealed + 16-byte tag)")
    end
    return item
end

-- Decoders of cleartext handshake parts, by the name V4_HANDSHAKE gives them.
local V4_PART_DECODERS = {
    offer = function(item, range)  -- revision 2: revisions u16, features u32, later fields
        if range:len() < 6 then return end
        item:add_le(f.offer_revisions, range(0, 2))
        item:add_le(f.offer_features, range(2, 4))
        local rest = 6
        if range:len() >= 22 then  -- message 1 sent again after a cookie reply
            item:add(f.offer_cookie, range(6, 16))
            rest = 22
        end
        if range:len() > rest then item:add(f.offer_more, range(rest, range:len() - rest)) end
    end,
}

local function dissect_v4_handshake(message, payload, tree)
    tree:add(f.handshake, message.title):set_generated()
    local offset = 0
    for _, part in ipairs(message.parts) do
        local len = part.len == "rest" and payload:len() - offset or part.len
        if len < 0 or offset + len > payload:len() then break end
        if len > 0 then
            local field = hs_fields["eft.v4." .. message.key .. "." .. part.key]
            if part.sealed then
                add_sealed(tree, field, payload(offset, len))
            else
                local item = tree:add(field, payload(offset, len))
                if part.decoder then V4_PART_DECODERS[part.decoder](item, payload(offset, len)) end
            end
        end
        offset = offset + len
    end
    return message.title
end

local function dissect_v4_record(code, payload, tree, pinfo, state, direction, key, size)
    local counter = state.assigned[key]
    if counter == nil and not pinfo.visited then
        counter = state.counters[direction]
        state.counters[direction] = counter + 1
        state.assigned[key] = counter
    end
    if counter then tree:add(f.record_counter, UInt64(counter)):set_generated() end
    local len = payload:len()
    if len < size then  -- the first part of a streamed record: its tag comes later
        if len > 0 then tree:add(f.ciphertext, payload) end
        tree:add(f.plaintext_len, size - TAG_LEN):set_generated()
        return string.format("%d %s record%s, %d bytes sealed", code, V4_NAMES[code] or "?",
            counter and (" #" .. counter) or "", size - TAG_LEN)
    end
    if len < TAG_LEN then
        tree:add_proto_expert_info(e.bad_size, "A record needs at least its 16-byte tag")
        return tostring(code) .. " record (no tag)"
    end
    if len > TAG_LEN then tree:add(f.ciphertext, payload(0, len - TAG_LEN)) end
    tree:add(f.plaintext_len, len - TAG_LEN):set_generated()
    local tag_item = tree:add(f.tag, payload(len - TAG_LEN, TAG_LEN))
    -- A tag seen before: the same record again (a relay, a replay) or an altered copy.
    local tag = tostring(payload(len - TAG_LEN, TAG_LEN):bytes())
    local body = len <= 65536 and tostring(payload:bytes()) or tostring(len)
    local here = { frame = pinfo.number, key = key, counter = counter, body = body }
    local entry = seen_tags[tag]
    if entry == nil then
        if not pinfo.visited then seen_tags[tag] = { first = here, by_stream = { [state.id] = here } } end
    else
        local earlier = entry.by_stream[state.id]
        if earlier == nil and not pinfo.visited then entry.by_stream[state.id] = here end
        local same_connection = earlier ~= nil and earlier.key ~= key
        local first = same_connection and earlier or entry.first
        if first.key ~= key then
            local where = string.format("record #%s of frame %d", tostring(first.counter), first.frame)
            if first.body ~= body then
                tag_item:add_proto_expert_info(e.altered,
                    "Same tag as " .. where .. ", other bytes: an altered copy, its tag cannot match")
            elseif same_connection then
                tag_item:add_proto_expert_info(e.replayed,
                    "Repeats " .. where .. " on the same connection: sealed for counter "
                    .. tostring(first.counter) .. ", it fails here")
            else
                tag_item:add_proto_expert_info(e.relayed, "Same record as " .. where .. " (another connection)")
            end
        end
    end
    local name = V4_NAMES[code] or "?"
    if code == 1604 then  -- PROTOCOL-v4 §6.3, §6.5: the size tells the two layouts apart
        name = (len - TAG_LEN == 8 and "resume") or (len - TAG_LEN == 4 and "ack") or name
    end
    return string.format("%d %s record%s, %d bytes sealed", code, name,
        counter and (" #" .. counter) or "", len - TAG_LEN)
end

-- Frames --------------------------------------------------------------------------------

-- Checks a header's size before its payload is awaited. Returns nil if the payload can
-- be read, or why not (then the rest of the segment is left undecoded, as a receiver
-- would close).
local function header_problem(version, direction, code, size, client_id_zero)
    if version ~= 3 and version ~= 4 then return e.bad_version, "version " .. version end
    local names = direction == "request" and REQUEST_NAMES or RESPONSE_NAMES
    if not names[code] then
        if size > V3_MAX_SKIP then return e.unknown_code, "code " .. code end
        return nil
    end
    if version == 3 then
        if direction == "request" and code == 828 then
            if size < V3_PACKET_FIXED then return nil end -- decoded below as bad size
        elseif direction == "request" then
            if size ~= V3_REQUEST_SIZES[code] and size > V3_MAX_SKIP then
                return e.bad_size, code .. " with payload_size " .. size
            end
        else
            local ok = false
            for _, s in ipairs(V3_RESPONSE_SIZES[code]) do ok = ok or s == size end
            if not ok then return e.bad_size, code .. " with payload_size " .. size end
        end
        return nil
    end
    local message = handshake_message(direction, code, client_id_zero, size)
    if message then
        if size > V4_HANDSHAKE_MAX then
            return e.bad_size, message.title .. " with payload_size " .. size
        end
    elseif size > V4_MAX_RECORD then
        return e.bad_size, "record of " .. size .. " bytes, more than " .. V4_MAX_RECORD
    end
    return nil
end

local function v3_size_problem(direction, code, size)
    if direction == "request" then
        if code == 828 then
            if size < V3_PACKET_FIXED then return "828 needs at least 267 bytes" end
        elseif V3_REQUEST_SIZES[code] and size ~= V3_REQUEST_SIZES[code] then
            return code .. " needs exactly " .. V3_REQUEST_SIZES[code] .. " bytes"
        end
    end
    return nil
end

-- Dissects the frame at offset. Returns the bytes consumed, or a negative number of
-- missing bytes (-1: at least one more), or "untrusted" if the framing has failed.
local function dissect_frame(tvb, pinfo, tree, offset, direction, state)
    local available = tvb:len() - offset
    local header_len = direction == "request" and REQUEST_HEADER_LEN or RESPONSE_HEADER_LEN
    if available < header_len then return -(header_len - available) end

    local h = direction == "request" and 16 or 0
    local version = tvb(offset + h, 1):uint()
    local code = tvb(offset + h + 1, 2):le_uint()
    local size = tvb(offset + h + 3, 4):le_uint()
    local client_id_zero = direction == "request" and tostring(tvb(offset, 16):bytes()) == string.rep("0", 32)
    local problem, why = header_problem(version, direction, code, size, client_id_zero)
    local total = header_len + size
    local complete = problem or available >= total

    if not complete and size <= STREAM_ABOVE then
        return -(total - available) -- reassembled by TCP, decoded once the whole frame is there
    end

    local item_len = problem and available or math.min(available, total)
    local subtree = tree:add(eft, tvb(offset, item_len))
    subtree:add(f.direction, direction == "request" and "client -> server" or "server -> client"):set_generated()
    if direction == "request" then subtree:add(f.client_id, tvb(offset, 16)) end
    subtree:add(f.version, tvb(offset + h, 1))
    local names = version == 4 and V4_NAMES or (direction == "request" and REQUEST_NAMES or RESPONSE_NAMES)
    subtree:add_le(f.code, tvb(offset + h + 1, 2)):set_text(
        string.format("Code: %d (%s)", code, names[code] or "unknown"))
    subtree:add_le(f.payload_size, tvb(offset + h + 3, 4))
    local label = string.format("v%d %d %s", version, code, names[code] or "unknown")

    if problem then
        subtree:add_proto_expert_info(problem, "Malformed: " .. why)
        if available > header_len then
            subtree:add(f.trailing, tvb(offset + header_len, available - header_len))
        end
        subtree:add_proto_expert_info(e.untrusted)
        subtree:append_text(", " .. label .. " (malformed)")
        append_info(pinfo, label .. " [malformed: " .. why .. "]")
        return "untrusted"
    end
    if not complete and size > STREAM_ABOVE then
        local is_packet = version == 3 and direction == "request" and code == 828
        local fixed = is_packet and V3_PACKET_FIXED or 0
        if available < header_len + fixed then return -(header_len + fixed - available) end
        local here = available - header_len
        local payload = tvb(offset + header_len, here)
        subtree:add(f.partial, here):set_generated()
        subtree:add_proto_expert_info(e.continues,
            string.format("Payload continues: %d of %d bytes here", here, size))
        local summary
        if is_packet then
            summary = dissect_v3_request(code, payload, subtree, pinfo, state, false)
        elseif version == 4 and not handshake_message(direction, code, client_id_zero, size) then
            local key = pinfo.number .. ":" .. offset
            summary = dissect_v4_record(code, payload, subtree, pinfo, state, direction, key, size)
        else
            if here > 0 then subtree:add(f.trailing, payload) end
            summary = string.format("%d %s", code, names[code] or "unknown")
        end
        summary = string.format("v%d %s (%d of %d bytes, continues)", version, summary, here, size)
        subtree:append_text(", " .. summary)
        append_info(pinfo, summary)
        return available, { left = total - available, tag = version == 4 and not is_packet }
    end

    local payload = tvb(offset + header_len, size)
    local summary
    if version == 3 then
        local bad = v3_size_problem(direction, code, size)
        if bad or not (direction == "request" and REQUEST_NAMES or RESPONSE_NAMES)[code] then
            subtree:add_proto_expert_info(bad and e.bad_size or e.unknown_code,
                "Malformed: " .. (bad or ("code " .. code)))
            if size > 0 then subtree:add(f.trailing, payload) end
            summary = string.format("%d %s [malformed]", code, names[code] or "unknown")
        elseif direction == "request" then
            summary = dissect_v3_request(code, payload, subtree, pinfo, state, true)
        else
            summary = dissect_v3_response(code, payload, subtree, pinfo)
        end
    else
        local message = handshake_message(direction, code, client_id_zero, size)
        if message then
            if size < message.sizes.min or size > message.sizes.max then
                subtree:add_proto_expert_info(e.bad_size, string.format(
                    "Malformed: %s with payload_size %d, not %d to %d (or V4_HANDSHAKE is out of date)",
                    message.title, size, message.sizes.min, message.sizes.max))
            end
            summary = string.format("%d %s", code, dissect_v4_handshake(message, payload, subtree))
        else
            local key = pinfo.number .. ":" .. offset
            summary = dissect_v4_record(code, payload, subtree, pinfo, state, direction, key, size)
        end
    end
    summary = "v" .. version .. " " .. summary
    subtree:append_text(", " .. summary)
    append_info(pinfo, summary)
    return total
end

function eft.dissector(tvb, pinfo, tree)
    local state = stream_state(pinfo)
    local direction = is_response(pinfo, state) and "response" or "request"
    pinfo.cols.protocol:set("EFT")
    local lost_at = state.lost[direction]
    if lost_at and pinfo.number > lost_at then
        -- An earlier frame broke the framing: a receiver would have closed, and nothing
        -- after it in this direction can be cut into frames reliably.
        local subtree = tree:add(eft, tvb())
        subtree:add(f.trailing, tvb())
        subtree:append_text(", after a malformed frame (not decoded)")
        append_info(pinfo, "bytes after a malformed frame")
        return tvb:len()
    end
    local offset = 0
    local cont
    if pinfo.visited then
        cont = state.cont_at[pinfo.number .. direction]
    else
        cont = state.streaming[direction]
        if cont then state.cont_at[pinfo.number .. direction] = cont end
    end
    if cont then
        -- The rest of a large payload whose header came in an earlier segment.
        local here = math.min(cont.left, tvb:len())
        local left = cont.left - here
        local subtree = tree:add(eft, tvb(0, here))
        subtree:add(f.continued, tvb(0, here))
        subtree:add(f.continued_left, left):set_generated()
        if left == 0 and cont.tag and here >= TAG_LEN then
            subtree:add(f.tag, tvb(here - TAG_LEN, TAG_LEN))
        end
        local text = string.format("payload continued, %d bytes (%d still to come)", here, left)
        subtree:append_text(", " .. text)
        append_info(pinfo, text)
        if not pinfo.visited then
            state.streaming[direction] = left > 0 and { left = left, tag = cont.tag } or nil
        end
        offset = here
    end
    while offset < tvb:len() do
        local consumed, streamed = dissect_frame(tvb, pinfo, tree, offset, direction, state)
        if streamed and not pinfo.visited then state.streaming[direction] = streamed end
        if consumed == "untrusted" then
            if not pinfo.visited and not state.lost[direction] then state.lost[direction] = pinfo.number end
            return tvb:len()
        end
        if consumed < 0 then
            pinfo.desegment_offset = offset
            pinfo.desegment_len = consumed == -1 and DESEGMENT_ONE_MORE_SEGMENT or -consumed
            return tvb:len()
        end
        offset = offset + consumed
    end
    return offset
end

-- Heuristic: the first client bytes of a connection form a request header whose version,
-- code and size are exactly those a real first request has (v3: 825/827 with 255 bytes,
-- v4: message 1, 32 to 96 bytes after a zero client id). Random data almost never matches.
local function looks_like_eft(tvb)
    if tvb:len() < REQUEST_HEADER_LEN then return false end
    local version = tvb(16, 1):uint()
    local code = tvb(17, 2):le_uint()
    local size = tvb(19, 4):le_uint()
    if version == 3 then return (code == 825 or code == 827) and size == NAME_LEN end
    if version == 4 then
        return code == 826 and size >= 32 and size <= 96 and tostring(tvb(0, 16):bytes()) == string.rep("0", 32)
    end
    return false
end

local function heuristic(tvb, pinfo, tree)
    if not eft.prefs.heuristic or not looks_like_eft(tvb) then return false end
    local state = stream_state(pinfo)
    state.server_port = pinfo.dst_port
    pinfo.conversation = eft
    eft.dissector(tvb, pinfo, tree)
    return true
end
eft:register_heuristic("tcp", heuristic)
register_port()
