// The I/O around a ClientSession: a TCP stream, the files to send and the config
// directory. It does what each Step says and feeds the session what arrives; every
// protocol decision is the session's (client_session.h).
#pragma once

#include <chrono>
#include <vector>

#include "client_session.h"
#include "config.h"
#include "console.h"
#include "platform/socket.h"
#include "transfer.h"

namespace eft {

// Establishes the session, then sends each planned file. `reply_timeout` bounds the wait
// for each whole reply. Throws eft::Error (ConnectionError for socket failures).
void run_session(platform::TcpStream& stream, std::chrono::milliseconds reply_timeout, ClientSession& session,
                 const config::ConfigDir& dir, const std::vector<TransferPlan>& plans, Reporter& reporter);

}  // namespace eft
